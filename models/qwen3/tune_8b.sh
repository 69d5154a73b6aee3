#!/usr/bin/env bash
# Qwen3-8B fine-tune on 8 devices per node (Ascend NPU or NVIDIA GPU), FSDP2 over all ranks.
#   MODEL_DIR=/data/Qwen3-8B bash models/qwen3/tune_8b.sh [--section.key value ...]
#   CONFIG=models/qwen3/configs/tune_qwen3_8b_32k_cp.yaml MODEL_DIR=... bash models/qwen3/tune_8b.sh   (32K, cp 2)
#   CONFIG=models/qwen3/configs/tune_qwen3_8b_32k_tp.yaml MODEL_DIR=... bash models/qwen3/tune_8b.sh   (32K, tp 2)
# Devices, nodes and master address: see scripts/launch_multinode.sh (NPUS_PER_NODE, NNODES, ...).
set -euo pipefail
cd "$(dirname "$0")/../.."
export MODEL_DIR=${MODEL_DIR:-checkpoints/Qwen3-8B}
exec bash scripts/launch_multinode.sh "${CONFIG:-models/qwen3/configs/tune_qwen3_8b.yaml}" Qwen3-8B "$@"
