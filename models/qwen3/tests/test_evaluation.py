"""Evaluation during training (data.eval_dataset / data.val_size, training.eval_steps): it never changes the
training (losses, gradient norms and every random generator's state equal a run without it), and its loss
is exact: the same over one process, data-parallel ranks, context and tensor parallel and any evaluation
batch size; records go to metrics.jsonl and the console. (Refused settings: core/tests/test_user_errors.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from shardzoo.testing import run_training

REPO = Path(__file__).resolve().parents[3]
CONFIG = REPO / "models/qwen3/configs/tune_qwen3_tiny.yaml"
COMMON = ["--training.max_steps", "4", "--training.logging_steps", "1", "--parallel.param_dtype", "fp32",
          "--data.dataset", "alpaca_sample", "--data.max_samples", "40"]
EVAL = ["--data.eval_dataset", "sharegpt_sample", "--training.eval_steps", "2"]


def _split(records):
    train = [(r["step"], r["loss"], r["grad_norm"]) for r in records if "loss" in r]
    evals = {r["step"]: r["eval_loss"] for r in records if "eval_loss" in r}
    return train, evals


def test_evaluation_leaves_training_alone(tmp_path):
    with_eval = run_training(CONFIG, tmp_path / "eval", cwd=REPO, overrides=COMMON + EVAL +
                             ["--training.save_steps", "4"])
    without = run_training(CONFIG, tmp_path / "plain", cwd=REPO, overrides=COMMON + ["--training.save_steps", "4"])
    train, evals = _split(with_eval)
    assert train == _split(without)[0]  # bit for bit
    assert sorted(evals) == [2, 4] and all(v > 0 for v in evals.values())  # every eval_steps, the end included
    # torch's generator, stored with the checkpoint (the trainer seeds it; python's and numpy's global
    # generators are not seeded and nothing of training draws from them): evaluation drew nothing.
    rng = [json.loads((tmp_path / run / "checkpoint-4/rng/rank-00000.json").read_text()) for run in ("eval", "plain")]
    assert rng[0]["torch"] == rng[1]["torch"]


# fp32; the layouts' weights after two steps differ in the last bits only (training's own tolerance,
# test_tensor_parallel.py), and the evaluation sums the same per-token losses in another order. Measured:
# <= 2e-7 relative. A target counted twice over tp/cp ranks, a rank's rows left out or a fill row counted
# move it by > 1e-2.
# Every layout trains on the same 4 rows per step (two data-parallel ranks read 2 each).
LAYOUTS = {"one process, eval batch 4": (1, ["--training.per_device_eval_batch_size", "4"]),
           "two ranks, eval batch 1": (2, ["--training.per_device_train_batch_size", "2",
                                           "--training.per_device_eval_batch_size", "1"]),
           "cp 2": (2, ["--parallel.cp_size", "2"]),
           "tp 2": (2, ["--parallel.tp_size", "2"])}


def test_evaluation_loss_is_exact_over_layouts(tmp_path):
    overrides = COMMON + ["--training.max_steps", "2", "--data.val_size", "0.2",
                          "--training.per_device_train_batch_size", "4"]
    runs = {name: _split(run_training(CONFIG, tmp_path / str(i), nproc=nproc, cwd=REPO, overrides=overrides + extra))
            for i, (name, (nproc, extra)) in enumerate(LAYOUTS.items())}
    want = runs["one process, eval batch 4"][1][2]
    for name, (_, evals) in runs.items():
        assert evals[2] == pytest.approx(want, rel=1e-6), name


def test_val_size_evaluates_at_the_end_without_eval_steps(tmp_path):
    records = run_training(CONFIG, tmp_path, cwd=REPO, overrides=COMMON + ["--data.val_size", "8"])
    assert [r["step"] for r in records if "eval_loss" in r] == [4]
    start = (tmp_path / "metrics.jsonl").read_text()
    assert '"eval_loss"' in start and '"eval_s"' in start
