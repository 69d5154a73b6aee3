#!/usr/bin/env bash
# Qwen3-8B fine-tune on 8 devices per node (Ascend NPU or NVIDIA GPU), FSDP2 over all ranks.
#   MODEL_DIR=/data/Qwen3-8B bash models/qwen3/tune_8b.sh [--section.key value ...]
# Multi-node: set NNODES, NODE_RANK, MASTER_ADDR (and MASTER_PORT) on every node.
set -euo pipefail
cd "$(dirname "$0")/../.."

NPUS_PER_NODE=${NPUS_PER_NODE:-8}
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
MASTER_ADDR=${MASTER_ADDR:-localhost}
MASTER_PORT=${MASTER_PORT:-6000}
MODEL_DIR=${MODEL_DIR:-checkpoints/Qwen3-8B}
CONFIG=${CONFIG:-models/qwen3/configs/tune_qwen3_8b.yaml}

if [ ! -f "$MODEL_DIR/config.json" ]; then
    echo "MODEL_DIR=$MODEL_DIR has no config.json: download Qwen3-8B (config, safetensors, tokenizer) there" >&2
    exit 2
fi

# Allocator, task-queue and CPU-binding settings (NPU and GPU).
source scripts/launch_env.sh

exec torchrun --nproc-per-node "$NPUS_PER_NODE" --nnodes "$NNODES" --node-rank "$NODE_RANK" \
    --master-addr "$MASTER_ADDR" --master-port "$MASTER_PORT" \
    -m shardzoo train "$CONFIG" --model.model_name_or_path "$MODEL_DIR" "$@"
