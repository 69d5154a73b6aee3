"""Golden loss: the tiny Qwen3 fine-tune from a fixed seed reproduces the stored CPU loss curve.

Regenerate (after an intended numeric change) with:
    python models/qwen3/tests/test_golden_loss.py
"""

from __future__ import annotations

from pathlib import Path

from shardzoo.testing import GoldenRun

REPO = Path(__file__).resolve().parents[3]
# Tolerance: shardzoo.testing.golden.CPU_FP32_RTOL (fp32 kernel noise across CPUs, reasoned there).
GOLDEN = GoldenRun(REPO, REPO / "models/qwen3/configs/tune_qwen3_tiny.yaml",
                   Path(__file__).parent / "golden" / "qwen3_cpu.json")


def test_golden_loss_cpu(tmp_path):
    GOLDEN.check(tmp_path)


if __name__ == "__main__":
    GOLDEN.main(__file__)
