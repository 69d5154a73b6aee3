"""Golden loss: the tiny Wan flow-matching fine-tune (online encoding by the tiny encoders, fixed seed)
reproduces the stored CPU loss curve.

Regenerate (after an intended numeric change) with:
    python models/wan/tests/test_golden_loss.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from shardzoo.testing import GoldenRun
from shardzoo_wan.tiny_encoders import save_tiny_encoders, task_overrides

REPO = Path(__file__).resolve().parents[3]

CONFIG = REPO / "models/wan/configs/tune_wan_tiny.yaml"
GOLDEN_FILE = Path(__file__).parent / "golden" / "wan_cpu.json"


def golden(encoders: Path) -> GoldenRun:
    # Tolerance: shardzoo.testing.golden.CPU_FP32_RTOL (frame decoding is Pillow's and exact; noise and
    # sigma come from seeded CPU generators).
    return GoldenRun(REPO, CONFIG, GOLDEN_FILE, tokenizer=None, overrides=task_overrides(encoders))


def test_golden_loss_cpu(tmp_path, tiny_encoders):
    # Flow matching from a zero output projection: the loss falls from ~1.07 (the target's variance)
    # by ~0.1 in 12 steps; a broken target, noise or modulation does not.
    golden(tiny_encoders).check(tmp_path, min_drop=0.08)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        golden(save_tiny_encoders(Path(tmp), REPO / "data/tokenizer")).main(__file__)
