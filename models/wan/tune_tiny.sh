#!/usr/bin/env bash
# Tiny Wan text-to-video fine-tune on the CPU (seconds on 2 cores): writes tiny random stand-ins of the
# frozen VAE and umT5 (offline, from a seed) to outputs/wan_tiny_encoders, then trains the 2-layer
# DiT of configs/tune_wan_tiny.yaml with flow matching on data/video_sample.json; metrics in
# outputs/wan_tiny/metrics.jsonl.
#   MODE=online (default): clips and captions are encoded every step by the frozen encoders.
#   MODE=features: python -m shardzoo_wan.extract writes latents and text states to
#     outputs/wan_tiny_features once (resumable), and training reads them (what large runs do).
# Extra arguments are config overrides, e.g.: bash models/wan/tune_tiny.sh --training.max_steps 10
set -euo pipefail
cd "$(dirname "$0")/../.."
NPROC=${NPROC:-1}
MODE=${MODE:-online}
ENCODERS=outputs/wan_tiny_encoders
python -m shardzoo_wan.tiny_encoders --out "$ENCODERS" --tokenizer data/tokenizer
case "$MODE" in
  online) TASK=() ;;
  features)
    FEATURES=outputs/wan_tiny_features
    python -m shardzoo_wan.extract --rows data/video_sample.json --vae "$ENCODERS/vae" \
        --text-encoder "$ENCODERS/text_encoder" --tokenizer "$ENCODERS/tokenizer" --out "$FEATURES" \
        --frames 5 --height 32 --width 32 --stride 2 --text-len 24
    TASK=(--task.features "$FEATURES" --task.vae null --task.text_encoder null --task.tokenizer null) ;;
  *) echo "MODE must be online or features, got '$MODE'" >&2; exit 2 ;;
esac
exec torchrun --standalone --nproc-per-node "$NPROC" -m shardzoo train \
    models/wan/configs/tune_wan_tiny.yaml "${TASK[@]}" "$@"
