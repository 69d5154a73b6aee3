"""Golden loss: the tiny InternVL fine-tune (images and text) from a fixed seed reproduces the stored
CPU loss curve.

Regenerate (after an intended numeric change) with:
    python models/internvl/tests/test_golden_loss.py
"""

from __future__ import annotations

import sys
from pathlib import Path

from shardzoo.testing import GoldenRun, compare_golden

REPO = Path(__file__).resolve().parents[3]
# fp32 on one CPU: deterministic here (bit-identical when repeated). Other CPUs pick other matmul
# kernels, which moves fp32 sums by ~1e-7 relative per op; compounded over 12 Adam steps that stays
# below 1e-5, so 2e-5 catches any real change (image features spliced into the wrong positions, or
# a wrong tile, moves the curve by > 1e-3). Image decoding and bicubic resizing are Pillow's, exact.
GOLDEN = GoldenRun(REPO, REPO / "models/internvl/configs/tune_internvl_tiny.yaml",
                   Path(__file__).parent / "golden" / "internvl_cpu.json",
                   rtol=2e-5, rtol_reason="fp32 reduction order differs between CPU kernels; bit-identical on the "
                   "same machine", tokenizer="data/tokenizer_internvl")


def test_golden_loss_cpu(tmp_path):
    losses = GOLDEN.run(tmp_path)
    compare_golden(losses, GOLDEN.golden)
    assert losses[-1] < losses[0] - 1.0  # the curve must also show learning


if __name__ == "__main__":
    print(f"wrote {GOLDEN.golden}: {GOLDEN.regenerate(__file__)}", file=sys.stderr)
