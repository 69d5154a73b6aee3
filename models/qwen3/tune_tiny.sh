#!/usr/bin/env bash
# Tiny Qwen3 fine-tune on the CPU (about a minute on 2 cores): the model is built from the inline
# tiny config, trained on data/ samples, and writes outputs/qwen3_tiny/metrics.jsonl.
# Extra arguments are config overrides, e.g.: bash models/qwen3/tune_tiny.sh --training.max_steps 10
set -euo pipefail
cd "$(dirname "$0")/../.."
NPROC=${NPROC:-1}
exec torchrun --standalone --nproc-per-node "$NPROC" -m shardzoo train \
    models/qwen3/configs/tune_qwen3_tiny.yaml "$@"
