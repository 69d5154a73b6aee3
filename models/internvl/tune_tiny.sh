#!/usr/bin/env bash
# Tiny InternVL fine-tune on the CPU (under a minute on 2 cores): the model is built from the inline
# tiny config, trained on data/image_sample.json (+ text conversations), and writes
# outputs/internvl_tiny/metrics.jsonl.
# Extra arguments are config overrides, e.g.: bash models/internvl/tune_tiny.sh --training.max_steps 10
set -euo pipefail
cd "$(dirname "$0")/../.."
NPROC=${NPROC:-1}
exec torchrun --standalone --nproc-per-node "$NPROC" -m shardzoo train \
    models/internvl/configs/tune_internvl_tiny.yaml "$@"
