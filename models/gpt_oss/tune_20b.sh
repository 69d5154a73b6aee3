#!/usr/bin/env bash
# GPT-OSS-20B fine-tune at 4K on 8 devices per node (Ascend NPU or NVIDIA GPU), FSDP2 over all ranks,
# optional expert parallel.
#   MODEL_DIR=/data/gpt-oss-20b bash models/gpt_oss/tune_20b.sh [--section.key value ...]
#   EP_SIZE=4 MODEL_DIR=... bash models/gpt_oss/tune_20b.sh      (experts split over 4 ranks)
#   CP_SIZE=4 MODEL_DIR=... bash models/gpt_oss/tune_20b.sh --data.cutoff_len 32768
#                         (long context: Ulysses splits each sequence over 4 ranks; 64 query / 8 kv heads)
# Multi-node: set NNODES, NODE_RANK, MASTER_ADDR (and MASTER_PORT) on every node.
set -euo pipefail
cd "$(dirname "$0")/../.."

NPUS_PER_NODE=${NPUS_PER_NODE:-8}
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
MASTER_ADDR=${MASTER_ADDR:-localhost}
MASTER_PORT=${MASTER_PORT:-6000}
MODEL_DIR=${MODEL_DIR:-checkpoints/gpt-oss-20b}
CONFIG=${CONFIG:-models/gpt_oss/configs/tune_gpt_oss_20b_4k.yaml}
EP_SIZE=${EP_SIZE:-1}
CP_SIZE=${CP_SIZE:-}   # unset: the config's parallel.cp_size

if [ ! -f "$MODEL_DIR/config.json" ]; then
    echo "MODEL_DIR=$MODEL_DIR has no config.json: download gpt-oss-20b (config, safetensors, tokenizer) there" >&2
    exit 2
fi

# Allocator, task-queue and CPU-binding settings (NPU and GPU).
source scripts/launch_env.sh

exec torchrun --nproc-per-node "$NPUS_PER_NODE" --nnodes "$NNODES" --node-rank "$NODE_RANK" \
    --master-addr "$MASTER_ADDR" --master-port "$MASTER_PORT" \
    -m shardzoo train "$CONFIG" --model.model_name_or_path "$MODEL_DIR" --parallel.ep_size "$EP_SIZE" \
    ${CP_SIZE:+--parallel.cp_size "$CP_SIZE"} "$@"
