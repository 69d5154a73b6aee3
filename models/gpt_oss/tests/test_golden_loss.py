"""Golden loss: the tiny GPT-OSS fine-tune from a fixed seed reproduces the stored CPU loss curve.

Regenerate (after an intended numeric change) with:
    python models/gpt_oss/tests/test_golden_loss.py
"""

from __future__ import annotations

from pathlib import Path

from shardzoo.testing import GoldenRun

REPO = Path(__file__).resolve().parents[3]
# Tolerance: shardzoo.testing.golden.CPU_FP32_RTOL. Top-k routing is discrete: a near-tie between two
# router logits could flip on another CPU; none is closer than the kernel noise in this run.
GOLDEN = GoldenRun(REPO, REPO / "models/gpt_oss/configs/tune_gpt_oss_tiny.yaml",
                   Path(__file__).parent / "golden" / "gpt_oss_cpu.json")


def test_golden_loss_cpu(tmp_path):
    GOLDEN.check(tmp_path)


if __name__ == "__main__":
    GOLDEN.main(__file__)
