"""Golden loss: the tiny GPT-OSS fine-tune from a fixed seed reproduces the stored CPU loss curve.

Regenerate (after an intended numeric change) with:
    python models/gpt_oss/tests/test_golden_loss.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from shardzoo.config import load_config
from shardzoo.testing import compare_golden, write_golden
from shardzoo.train import train

REPO = Path(__file__).resolve().parents[3]
CONFIG = REPO / "models/gpt_oss/configs/tune_gpt_oss_tiny.yaml"
GOLDEN = Path(__file__).parent / "golden" / "gpt_oss_cpu.json"
OVERRIDES = ["--training.max_steps", "12", "--training.logging_steps", "1", "--training.progress_bar", "false",
             "--model.tokenizer_name_or_path", str(REPO / "data/tokenizer"), "--data.dataset_dir", str(REPO / "data")]
# fp32 on one CPU: the run is deterministic here (bit-identical when repeated). Other CPUs pick
# other matmul kernels (AVX2 vs AVX-512 blocking), which moves fp32 sums by ~1e-7 relative per
# op; compounded over 12 Adam steps that stays below 1e-5, so 2e-5 catches any real change (a
# wrong mask or norm moves the curve by > 1e-3). Top-k routing is discrete: a near-tie between two
# router logits could flip on another CPU; none is closer than the kernel noise in this run.
RTOL = 2e-5
RTOL_REASON = "fp32 reduction order differs between CPU kernels; bit-identical on the same machine"


def run(output_dir: Path) -> list[float]:
    torch.set_num_threads(2)
    cfg = load_config(CONFIG, OVERRIDES + ["--training.output_dir", str(output_dir)])
    return train(cfg).losses


def test_golden_loss_cpu(tmp_path):
    losses = run(tmp_path)
    compare_golden(losses, GOLDEN)
    assert losses[-1] < losses[0] - 1.0  # the curve must also show learning


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        losses = run(Path(tmp))
    write_golden(GOLDEN, losses, rtol=RTOL, rtol_reason=RTOL_REASON, command="python " + str(
        Path(__file__).relative_to(REPO)), config={"config": str(CONFIG.relative_to(REPO)), "overrides": OVERRIDES[:6]})
    print(f"wrote {GOLDEN}: {losses}", file=sys.stderr)
