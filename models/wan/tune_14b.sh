#!/usr/bin/env bash
# Wan2.1-T2V-14B text-to-video fine-tune on 8 devices per node (Ascend NPU or NVIDIA GPU), FSDP2.
#   MODEL_DIR=/data/Wan2.1-T2V-14B-Diffusers/transformer bash models/wan/tune_14b.sh [--section.key value ...]
#   FEATURES=<dir from python -m shardzoo_wan.extract> (default: the config's task.features)
#   MODE=online ENCODERS_DIR=/data/Wan2.1-T2V-14B-Diffusers: encode with the frozen VAE / umT5 every step
# Devices, nodes and master address: see scripts/launch_multinode.sh (NPUS_PER_NODE, NNODES, ...).
set -euo pipefail
cd "$(dirname "$0")/../.."
export MODEL_DIR=${MODEL_DIR:-checkpoints/Wan2.1-T2V-14B-Diffusers/transformer}
source models/wan/task_args.sh
exec bash scripts/launch_multinode.sh "${CONFIG:-models/wan/configs/tune_wan2_1_t2v_14b.yaml}" \
    Wan2.1-T2V-14B-Diffusers/transformer "${TASK_ARGS[@]}" "$@"
