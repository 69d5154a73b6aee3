#!/usr/bin/env bash
# InternVL3.5-8B (HF format, Qwen3-8B + InternViT-300M) image-text fine-tune on 8 devices per node
# (Ascend NPU or NVIDIA GPU), FSDP2 over all ranks.
#   MODEL_DIR=/data/InternVL3_5-8B-HF bash models/internvl/tune_8b.sh [--section.key value ...]
#   ... --model.freeze_modules "[model.vision_tower]"      (train projector + language model only)
#   CONFIG=models/internvl/configs/tune_internvl3_5_8b_16k_tp.yaml MODEL_DIR=... bash models/internvl/tune_8b.sh
#                                                          (16K tokens, tensor parallel 2)
# The original InternVLChatModel checkpoints (OpenGVLab/InternVL3_5-8B) load too.
# Devices, nodes and master address: see scripts/launch_multinode.sh (NPUS_PER_NODE, NNODES, ...).
set -euo pipefail
cd "$(dirname "$0")/../.."
export MODEL_DIR=${MODEL_DIR:-checkpoints/InternVL3_5-8B-HF}
exec bash scripts/launch_multinode.sh "${CONFIG:-models/internvl/configs/tune_internvl3_5_8b.yaml}" \
    InternVL3_5-8B-HF "$@"
