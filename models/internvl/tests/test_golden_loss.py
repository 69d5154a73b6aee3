"""Golden loss: the tiny InternVL fine-tune (images and text) from a fixed seed reproduces the stored
CPU loss curve.

Regenerate (after an intended numeric change) with:
    python models/internvl/tests/test_golden_loss.py
"""

from __future__ import annotations

from pathlib import Path

from shardzoo.testing import GoldenRun

REPO = Path(__file__).resolve().parents[3]
# Tolerance: shardzoo.testing.golden.CPU_FP32_RTOL (image decoding and bicubic resizing are Pillow's,
# exact).
GOLDEN = GoldenRun(REPO, REPO / "models/internvl/configs/tune_internvl_tiny.yaml",
                   Path(__file__).parent / "golden" / "internvl_cpu.json", tokenizer="data/tokenizer_internvl")


def test_golden_loss_cpu(tmp_path):
    GOLDEN.check(tmp_path)


if __name__ == "__main__":
    GOLDEN.main(__file__)
