#!/usr/bin/env bash
# Tiny GPT-OSS fine-tune on the CPU (well under a minute on 2 cores): the model is built from the
# inline tiny config, trained on data/ samples, and writes outputs/gpt_oss_tiny/metrics.jsonl.
# Extra arguments are config overrides; NPROC=2 ... --parallel.ep_size 2 splits the experts.
set -euo pipefail
cd "$(dirname "$0")/../.."
NPROC=${NPROC:-1}
exec torchrun --standalone --nproc-per-node "$NPROC" -m shardzoo train \
    models/gpt_oss/configs/tune_gpt_oss_tiny.yaml "$@"
