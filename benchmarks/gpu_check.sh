#!/usr/bin/env bash
# The prepared accelerator check (benchmarks/gpu_check.py): installs the packages into the machine's
# Python without dependencies or build isolation (no network; the preinstalled torch and transformers
# stay), then runs every stage under its time limit and writes DIR/summary.{json,md}.
#   bash benchmarks/gpu_check.sh [--out DIR]        # on a machine with one NVIDIA GPU (about 8 minutes)
#   bash benchmarks/gpu_check.sh --dry-run          # every stage on tiny shapes on the CPU (no install)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [[ " $* " != *" --dry-run "* ]]; then
    "$PYTHON" -m pip install --quiet --no-deps --no-build-isolation \
        -e core -e models/qwen3 -e models/gpt_oss -e models/internvl -e models/wan
fi
exec "$PYTHON" benchmarks/gpu_check.py "$@"
