#!/usr/bin/env bash
# Wan2.2-T2V-A14B (or with VARIANT=i2v Wan2.2-I2V-A14B): fine-tune ONE expert (two whole 14B DiTs chosen
# by noise level; train them as two jobs) on 8 devices per node (Ascend NPU or NVIDIA GPU), FSDP2 + Ulysses CP 2.
#   EXPERT=high WAN=/data/Wan2.2-T2V-A14B-Diffusers bash models/wan/tune_a14b.sh   (transformer/, sigma [0.875, 1))
#   EXPERT=low  WAN=/data/Wan2.2-T2V-A14B-Diffusers bash models/wan/tune_a14b.sh   (transformer_2/, sigma [0, 0.875))
#   VARIANT=i2v EXPERT=high WAN=/data/Wan2.2-I2V-A14B-Diffusers ...   (boundary 0.9 instead of 0.875)
#   FEATURES / MODE=online ENCODERS_DIR=$WAN as in tune_14b.sh; extra arguments are config overrides.
# Devices, nodes and master address: see scripts/launch_multinode.sh (NPUS_PER_NODE, NNODES, ...).
set -euo pipefail
cd "$(dirname "$0")/../.."
VARIANT=${VARIANT:-t2v}
case "$VARIANT" in  # the pipelines' boundary_ratio
  t2v) BOUNDARY=0.875 ;;
  i2v) BOUNDARY=0.9 ;;
  *) echo "VARIANT must be t2v or i2v, got '$VARIANT'" >&2; exit 2 ;;
esac
NAME=Wan2.2-${VARIANT^^}-A14B-Diffusers
WAN=${WAN:-checkpoints/$NAME}
case "${EXPERT:-}" in
  high) SUBFOLDER=transformer; RANGE=(--task.sigma_low "$BOUNDARY" --task.sigma_high 1.0) ;;
  low) SUBFOLDER=transformer_2; RANGE=(--task.sigma_low 0.0 --task.sigma_high "$BOUNDARY") ;;
  *) echo "set EXPERT=high or EXPERT=low (the two experts are trained as separate jobs)" >&2; exit 2 ;;
esac
export MODEL_DIR=${MODEL_DIR:-$WAN/$SUBFOLDER}
source models/wan/task_args.sh
exec bash scripts/launch_multinode.sh "${CONFIG:-models/wan/configs/tune_wan2_2_${VARIANT}_a14b.yaml}" \
    "$NAME/$SUBFOLDER" "${RANGE[@]}" --training.output_dir "outputs/wan2_2_${VARIANT}_a14b_$EXPERT" \
    "${TASK_ARGS[@]}" "$@"
