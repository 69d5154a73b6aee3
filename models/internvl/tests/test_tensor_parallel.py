"""Tensor parallel on InternVL equals one process: the language model split over 2 tp ranks (vocab-parallel
embedding all-reduced so the image features splice into whole rows, the sequence split from the decoder's
input on), the vision tower and projector whole on each rank: every parameter's gradient of a text batch
(the vision tower runs on its blank tile), and a training run with micro-batches with and without images."""

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
CONFIG = REPO / "models/internvl/configs/tune_internvl_tiny.yaml"


def test_batch_loss_and_grads_equal_one_process(tmp_path):
    # The rows' random ids start at 1: image token id 0 keeps them text. Tolerances: the fp32 ones of
    # assert_same_loss_and_grads (sums in another order only).
    hf_config = {"image_token_id": 0}
    ref = reference_loss_and_grads("internvl", True, hf_config)
    ours = context_parallel_loss_and_grads("internvl", 1, True, tmp_path, hf_config, tp_size=2)
    assert_same_loss_and_grads(ours, ref)


@pytest.mark.slow
def test_tp2_trains_as_one_process(tmp_path):
    # fp32, the same rows per step: the runs differ in summation order only. Measured over five steps:
    # loss <= 2e-7 relative, grad norm <= 4e-6. A vision-tower gradient summed over the tp ranks (it is
    # a copy on each) moves the grad norm by 3e-2; features spliced into a sequence slice fail outright.
    overrides = ["--training.max_steps", "5", "--training.logging_steps", "1", "--data.max_samples", "48",
                 "--parallel.param_dtype", "fp32"]
    single = [r for r in run_training(CONFIG, tmp_path / "one", nproc=1, cwd=REPO, overrides=overrides) if "loss" in r]
    tp = [r for r in run_training(CONFIG, tmp_path / "tp2", nproc=2, cwd=REPO, timeout=300,
                                  overrides=overrides + ["--parallel.tp_size", "2"]) if "loss" in r]
    assert len(tp) == len(single) == 5
    assert [r["loss"] for r in tp] == pytest.approx([r["loss"] for r in single], rel=1e-5)
    assert [r["grad_norm"] for r in tp] == pytest.approx([r["grad_norm"] for r in single], rel=5e-5)


def test_mindspeed_patterns_that_reach_the_vision_tower_are_refused():
    # MindSpeed-LLM's default '*.q_proj' also names the vision tower's projections, which this plan keeps
    # whole: one line before anything runs (shardzoo plan builds the split model on a fake process group).
    from shardzoo.config import ConfigError, load_config
    from shardzoo.plan import plan_memory

    cfg = load_config(CONFIG, ["--training.output_dir", "unused", "--parallel.tp_size", "2",
                               "--parallel.tp_colwise", "['*.q_proj', '*.k_proj', '*.v_proj']"])
    with pytest.raises(ConfigError, match=r"parallel.tp_colwise: \['model.vision_tower.encoder.layer.0.attention"
                                          r".q_proj'.* are outside the blocks tensor parallel splits"):
        plan_memory(cfg, 2)
