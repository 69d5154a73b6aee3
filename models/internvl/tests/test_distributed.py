"""FSDP2 on 2 gloo ranks gives the loss curve of 1 process for InternVL (vision and language layers
sharded as their own units; micro-batches with and without images on different ranks)."""

from __future__ import annotations

from pathlib import Path

import pytest
from shardzoo.testing import run_training

REPO = Path(__file__).resolve().parents[3]
CONFIG = REPO / "models/internvl/configs/tune_internvl_tiny.yaml"
COMMON = ["--training.max_steps", "5", "--training.logging_steps", "1", "--data.max_samples", "48"]
# Same samples per step, gradients summed over ranks, the loss over the global token count: the
# runs differ in fp32 summation order only (measured: loss <= 2e-7, grad norm <= 1e-5 relative).
# A rank splicing another rank's image features, or skipping its vision tower, moves both > 1e-3.
RTOL = 1e-5
GRAD_NORM_RTOL = 1e-4


# In file order, 6 image rows then 6 text rows make steps where one rank's micro-batch is all text
# while the other's has images (step 2: rank 0 text rows 8-11, rank 1 the masked fill rows 0-3):
# the text-only rank must still run its vision units, or FSDP's collectives would hang.
ORDERS = {"shuffled": [], "text-only-rank": ["--data.max_samples", "6", "--data.disable_shuffling", "true"],
          # square-root averaging: weights per sample, the denominator summed over ranks
          "square-loss": ["--training.loss_reduction", "square"]}


@pytest.mark.parametrize("order", list(ORDERS))
def test_fsdp2_two_ranks_equals_one_process(tmp_path, order):
    overrides = COMMON + ORDERS[order]
    single = run_training(CONFIG, tmp_path / "one", nproc=1, cwd=REPO,
                          overrides=overrides + ["--training.per_device_train_batch_size", "8"])
    two = run_training(CONFIG, tmp_path / "two", nproc=2, cwd=REPO, timeout=300,
                       overrides=overrides + ["--training.per_device_train_batch_size", "4"])
    assert len(two) == len(single) == 5
    assert [r["loss"] for r in two] == pytest.approx([r["loss"] for r in single], rel=RTOL)
    assert [r["grad_norm"] for r in two] == pytest.approx([r["grad_norm"] for r in single], rel=GRAD_NORM_RTOL)
