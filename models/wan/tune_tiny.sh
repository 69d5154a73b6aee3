#!/usr/bin/env bash
# Tiny Wan fine-tune on the CPU (seconds on 2 cores): writes tiny random stand-ins of the frozen VAE,
# umT5 and CLIP (offline, from a seed) to outputs/wan_tiny_encoders, then trains a 2-layer DiT with flow
# matching on data/video_sample.json; metrics in the config's output_dir/metrics.jsonl.
#   VARIANT=t2v (default): text-to-video, configs/tune_wan_tiny.yaml (outputs/wan_tiny).
#   VARIANT=i2v: Wan2.1-style image-to-video, configs/tune_wan_i2v_tiny.yaml (outputs/wan_i2v_tiny).
#   MODE=online (default): clips and captions are encoded every step by the frozen encoders.
#   MODE=features: python -m shardzoo_wan.extract writes latents and text states to
#     outputs/wan_tiny_features once (resumable), and training reads them (what large runs do).
# Extra arguments are config overrides, e.g.: bash models/wan/tune_tiny.sh --training.max_steps 10
set -euo pipefail
cd "$(dirname "$0")/../.."
NPROC=${NPROC:-1}
MODE=${MODE:-online}
VARIANT=${VARIANT:-t2v}
ENCODERS=outputs/wan_tiny_encoders
case "$VARIANT" in
  t2v) CONFIG=models/wan/configs/tune_wan_tiny.yaml; FEATURES=outputs/wan_tiny_features; EXTRACT=(); IMAGE_NULLS=() ;;
  i2v) CONFIG=models/wan/configs/tune_wan_i2v_tiny.yaml; FEATURES=outputs/wan_i2v_tiny_features
       EXTRACT=(--image-to-video --image-encoder "$ENCODERS/image_encoder" --image-processor "$ENCODERS/image_processor")
       IMAGE_NULLS=(--task.image_encoder null --task.image_processor null) ;;
  *) echo "VARIANT must be t2v or i2v, got '$VARIANT'" >&2; exit 2 ;;
esac
python -m shardzoo_wan.tiny_encoders --out "$ENCODERS" --tokenizer data/tokenizer
case "$MODE" in
  online) TASK=() ;;
  features)
    python -m shardzoo_wan.extract --rows data/video_sample.json --vae "$ENCODERS/vae" \
        --text-encoder "$ENCODERS/text_encoder" --tokenizer "$ENCODERS/tokenizer" --out "$FEATURES" \
        --frames 5 --height 32 --width 32 --stride 2 --text-len 24 "${EXTRACT[@]}"
    TASK=(--task.features "$FEATURES" --task.vae null --task.text_encoder null --task.tokenizer null
          "${IMAGE_NULLS[@]}") ;;
  *) echo "MODE must be online or features, got '$MODE'" >&2; exit 2 ;;
esac
exec torchrun --standalone --nproc-per-node "$NPROC" -m shardzoo train \
    "$CONFIG" "${TASK[@]}" "$@"
