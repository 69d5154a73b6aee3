#!/usr/bin/env bash
# GPT-OSS-20B fine-tune at 4K on 8 devices per node (Ascend NPU or NVIDIA GPU), FSDP2 over all ranks,
# optional expert parallel.
#   MODEL_DIR=/data/gpt-oss-20b bash models/gpt_oss/tune_20b.sh [--section.key value ...]
#   EP_SIZE=4 MODEL_DIR=... bash models/gpt_oss/tune_20b.sh      (experts split over 4 ranks)
#   CP_SIZE=4 MODEL_DIR=... bash models/gpt_oss/tune_20b.sh --data.cutoff_len 32768
#                         (long context: Ulysses splits each sequence over 4 ranks; 64 query / 8 kv heads)
# Devices, nodes and master address: see scripts/launch_multinode.sh (NPUS_PER_NODE, NNODES, ...).
set -euo pipefail
cd "$(dirname "$0")/../.."
export MODEL_DIR=${MODEL_DIR:-checkpoints/gpt-oss-20b}
EP_SIZE=${EP_SIZE:-1}
CP_SIZE=${CP_SIZE:-}   # unset: the config's parallel.cp_size
exec bash scripts/launch_multinode.sh "${CONFIG:-models/gpt_oss/configs/tune_gpt_oss_20b_4k.yaml}" gpt-oss-20b \
    --parallel.ep_size "$EP_SIZE" ${CP_SIZE:+--parallel.cp_size "$CP_SIZE"} "$@"
