#!/usr/bin/env bash
# Multi-device launch shared by the packages' scripts (models/*/tune_8b.sh, tune_20b.sh, ...):
#   bash scripts/launch_multinode.sh CONFIG "MODEL NAME" [--section.key value ...]
# Environment (defaults): NPUS_PER_NODE=8 NNODES=1 NODE_RANK=0 MASTER_ADDR=localhost
# MASTER_PORT=6000, and MODEL_DIR: the downloaded checkpoint (config.json, *.safetensors, tokenizer).
# Multi-node: set NNODES, NODE_RANK, MASTER_ADDR (and MASTER_PORT) on every node.
set -euo pipefail
cd "$(dirname "$0")/.."

CONFIG=$1
MODEL_NAME=$2
shift 2
NPUS_PER_NODE=${NPUS_PER_NODE:-8}
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
MASTER_ADDR=${MASTER_ADDR:-localhost}
MASTER_PORT=${MASTER_PORT:-6000}
MODEL_DIR=${MODEL_DIR:?set MODEL_DIR to the downloaded checkpoint folder}

if [ ! -f "$MODEL_DIR/config.json" ]; then
    echo "MODEL_DIR=$MODEL_DIR has no config.json: download $MODEL_NAME (config, safetensors, tokenizer) there" >&2
    exit 2
fi

# Allocator, task-queue and CPU-binding settings (NPU and GPU).
source scripts/launch_env.sh

exec torchrun --nproc-per-node "$NPUS_PER_NODE" --nnodes "$NNODES" --node-rank "$NODE_RANK" \
    --master-addr "$MASTER_ADDR" --master-port "$MASTER_PORT" \
    -m shardzoo train "$CONFIG" --model.model_name_or_path "$MODEL_DIR" "$@"
