"""Ulysses context parallel on gloo ranks gives the loss and gradients of one process: per batch
(every parameter's gradient, sinks cut by head chunk, sliding-window and full layers, packed
documents, the aux loss) and over a short training run, also together with expert parallel."""

from __future__ import annotations

from pathlib import Path

import pytest
from shardzoo.testing import run_training
from shardzoo.testing.context_parallel import (
    assert_same_loss_and_grads,
    context_parallel_loss_and_grads,
    reference_loss_and_grads,
)

REPO = Path(__file__).resolve().parents[3]
CONFIG = REPO / "models/gpt_oss/configs/tune_gpt_oss_tiny.yaml"
AUX = {"output_router_logits": True, "router_aux_loss_coef": 0.02}


@pytest.mark.parametrize("packed", [False, True], ids=["unpacked", "packed"])
def test_batch_loss_and_grads_equal_one_process(tmp_path, packed):
    # The tiny config: 4 query / 2 kv heads, window 4 < the documents, two sliding and two full layers.
    ref = reference_loss_and_grads("gpt_oss", packed, AUX)
    ours = context_parallel_loss_and_grads("gpt_oss", 2, packed, tmp_path, AUX)
    assert_same_loss_and_grads(ours, ref)


# Summation order only (fp32): measured loss <= 1e-7 and grad norm <= 3e-6 relative; the aux loss
# and the expert load are over all ranks' tokens, so they match too.
RTOL = 1e-5
GRAD_NORM_RTOL = 5e-5
COMMON = ["--training.max_steps", "3", "--training.logging_steps", "1", "--data.max_samples", "40",
          "--parallel.param_dtype", "fp32"]


@pytest.mark.parametrize("packed,ep", [(False, 1), (True, 2)], ids=["unpacked", "packed-ep2"])
def test_training_with_cp2_equals_one_process(tmp_path, packed, ep):
    overrides = COMMON + ["--data.packing", str(packed).lower()]
    single = run_training(CONFIG, tmp_path / "single", nproc=1, cwd=REPO, overrides=overrides)
    cp = run_training(CONFIG, tmp_path / "cp2", nproc=2, cwd=REPO,
                      overrides=overrides + ["--parallel.cp_size", "2", "--parallel.ep_size", str(ep)])
    got, want = [r for r in cp if "loss" in r], [r for r in single if "loss" in r]
    assert len(got) == len(want) == 3
    for key, rtol in (("loss", RTOL), ("aux_loss", RTOL), ("grad_norm", GRAD_NORM_RTOL)):
        assert [r[key] for r in got] == pytest.approx([r[key] for r in want], rel=rtol), key
    for key in ("expert_tokens_min", "expert_tokens_max"):
        assert [r[key] for r in got] == [r[key] for r in want]
