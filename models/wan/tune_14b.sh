#!/usr/bin/env bash
# Wan2.1-14B fine-tune on 8 devices per node (Ascend NPU or NVIDIA GPU), FSDP2: text-to-video, or with
# VARIANT=i2v image-to-video (Wan2.1-I2V-14B-480P: first-frame conditioning and CLIP image tokens).
#   MODEL_DIR=/data/Wan2.1-T2V-14B-Diffusers/transformer bash models/wan/tune_14b.sh [--section.key value ...]
#   VARIANT=i2v MODEL_DIR=/data/Wan2.1-I2V-14B-480P-Diffusers/transformer bash models/wan/tune_14b.sh
#   FEATURES=<dir from python -m shardzoo_wan.extract> (default: the config's task.features)
#   MODE=online ENCODERS_DIR=/data/Wan2.1-T2V-14B-Diffusers: encode with the frozen VAE / umT5 (and for
#     I2V its image_encoder/ CLIP) every step
# Devices, nodes and master address: see scripts/launch_multinode.sh (NPUS_PER_NODE, NNODES, ...).
set -euo pipefail
cd "$(dirname "$0")/../.."
case "${VARIANT:-t2v}" in
  t2v) REPO_NAME=Wan2.1-T2V-14B-Diffusers ;;
  i2v) REPO_NAME=Wan2.1-I2V-14B-480P-Diffusers ;;
  *) echo "VARIANT must be t2v or i2v, got '$VARIANT'" >&2; exit 2 ;;
esac
export MODEL_DIR=${MODEL_DIR:-checkpoints/$REPO_NAME/transformer}
source models/wan/task_args.sh
exec bash scripts/launch_multinode.sh "${CONFIG:-models/wan/configs/tune_wan2_1_${VARIANT:-t2v}_14b.yaml}" \
    "$REPO_NAME/transformer" "${TASK_ARGS[@]}" "$@"
