"""Golden loss: the tiny Wan flow-matching fine-tunes, text-to-video and image-to-video (online encoding by
the tiny encoders, fixed seed), reproduce their stored CPU loss curves.

Regenerate (after an intended numeric change) with:
    python models/wan/tests/test_golden_loss.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from shardzoo.testing import GoldenRun
from shardzoo_wan.tiny_encoders import save_tiny_encoders, task_overrides

REPO = Path(__file__).resolve().parents[3]

CONFIGS = REPO / "models/wan/configs"
GOLDEN = Path(__file__).parent / "golden"


def golden(encoders: Path, variant: str = "t2v") -> GoldenRun:
    # Tolerance: shardzoo.testing.golden.CPU_FP32_RTOL (frame decoding is Pillow's and exact; noise and
    # sigma come from seeded CPU generators).
    if variant == "t2v":
        return GoldenRun(REPO, CONFIGS / "tune_wan_tiny.yaml", GOLDEN / "wan_cpu.json", tokenizer=None,
                         overrides=task_overrides(encoders))
    return GoldenRun(REPO, CONFIGS / "tune_wan_i2v_tiny.yaml", GOLDEN / "wan_i2v_cpu.json", tokenizer=None,
                     overrides=task_overrides(encoders, image=True))


def test_golden_loss_cpu(tmp_path, tiny_encoders):
    # Flow matching from a zero output projection: the loss falls from ~1.07 (the target's variance)
    # by ~0.1 in 12 steps; a broken target, noise or modulation does not.
    golden(tiny_encoders).check(tmp_path, min_drop=0.08)


def test_golden_loss_image_to_video_cpu(tmp_path, tiny_encoders):
    # The same clips, noise and schedule as text-to-video with the first frame's condition beside the noisy
    # latents: it starts at the same loss (zero output projection) and falls by ~0.1 too.
    golden(tiny_encoders, "i2v").check(tmp_path, min_drop=0.08)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        encoders = save_tiny_encoders(Path(tmp), REPO / "data/tokenizer")
        for variant in ("t2v", "i2v"):
            golden(encoders, variant).main(__file__)
