#!/usr/bin/env bash
# Qwen3-32B fine-tune on 8 devices of >= 80 GB (Ascend NPU or NVIDIA GPU): tp 4 x FSDP2 2
# (models/qwen3/configs/tune_qwen3_32b_tp.yaml; on 64 GB devices run 2 nodes: NNODES=2).
#   MODEL_DIR=/data/Qwen3-32B bash models/qwen3/tune_32b.sh [--section.key value ...]
# Devices, nodes and master address: see scripts/launch_multinode.sh (NPUS_PER_NODE, NNODES, ...).
set -euo pipefail
cd "$(dirname "$0")/../.."
export MODEL_DIR=${MODEL_DIR:-checkpoints/Qwen3-32B}
exec bash scripts/launch_multinode.sh "${CONFIG:-models/qwen3/configs/tune_qwen3_32b_tp.yaml}" Qwen3-32B "$@"
