"""Tensor parallel on Qwen3 equals one process: per batch (every parameter's gradient; per-head q/k norms,
one kv head replicated on both ranks, tied embeddings, packed documents, tp x cp) and over short training
runs through the trainer (TP2, TP2 x FSDP2 on 4 ranks, recompute); a TP2 checkpoint resumes on TP1 and
back (DCP reshards), and the HF export of a TP run is the one-process export of its checkpoint, bit for bit."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from shardzoo.cli import main
from shardzoo.testing import loss_curve, run_training
from shardzoo.testing.context_parallel import (
    assert_same_loss_and_grads,
    context_parallel_loss_and_grads,
    reference_loss_and_grads,
)

REPO = Path(__file__).resolve().parents[3]
CONFIG = REPO / "models/qwen3/configs/tune_qwen3_tiny.yaml"


@pytest.mark.parametrize("model_id,tp,cp,hf_config", [
    ("qwen3", 2, 1, {"num_key_value_heads": 1, "tie_word_embeddings": True}),
    pytest.param("qwen3", 2, 2, {}, marks=pytest.mark.slow),
    # Sparse layers run their MoE block on each rank's tokens; the dense layer (mlp_only_layers) splits.
    ("qwen3_moe", 2, 1, {}),
], ids=["tp2-kv1-tied", "tp2xcp2", "moe-tp2"])
def test_batch_loss_and_grads_equal_one_process(tmp_path, model_id, tp, cp, hf_config):
    # Tolerances: assert_same_loss_and_grads's fp32 ones (sums in another order only).
    ref = reference_loss_and_grads(model_id, True, hf_config)
    ours = context_parallel_loss_and_grads(model_id, cp, True, tmp_path, hf_config, tp_size=tp)
    assert_same_loss_and_grads(ours, ref)


# fp32 (param_dtype fp32): the runs differ in summation order only. Measured: loss equal to 1e-7
# relative, grad norm to 1e-5 relative after three steps (Adam's first steps amplify the last bits);
# a lost partial sum or a token counted twice moves the loss by > 1e-3.
RTOL = 1e-5
GRAD_NORM_RTOL = 5e-5
COMMON = ["--training.logging_steps", "1", "--data.max_samples", "40", "--parallel.param_dtype", "fp32"]


def _losses(records):
    return [r for r in records if "loss" in r]


def _assert_same_curve(got, want):
    got, want = _losses(got), _losses(want)
    assert [r["step"] for r in got] == [r["step"] for r in want]
    assert [r["loss"] for r in got] == pytest.approx([r["loss"] for r in want], rel=RTOL)
    assert [r["grad_norm"] for r in got] == pytest.approx([r["grad_norm"] for r in want], rel=GRAD_NORM_RTOL)


def test_tp2_with_recompute_trains_as_one_process(tmp_path):
    # rms_norm bound to torch's fused kernel, which knows nothing of DTensor: the norms run on local tensors.
    overrides = COMMON + ["--training.max_steps", "3", "--parallel.recompute", "true", "--ops.rms_norm", "native"]
    single = run_training(CONFIG, tmp_path / "single", nproc=1, cwd=REPO, overrides=overrides)
    tp = run_training(CONFIG, tmp_path / "tp2", nproc=2, cwd=REPO, overrides=overrides + ["--parallel.tp_size", "2"])
    _assert_same_curve(tp, single)
    # The tp ranks share their batch: every token counted once in the throughput.
    assert sum(r["tokens_per_s"] * r["elapsed_s"] for r in _losses(tp)) == pytest.approx(
        sum(r["tokens_per_s"] * r["elapsed_s"] for r in _losses(single)), rel=1e-6)


@pytest.mark.slow
def test_tp2_x_fsdp2_on_four_ranks_trains_as_fsdp2(tmp_path):
    # Both read the rows of two data-parallel ranks; the 4-rank run splits each one's layers over 2 tp ranks.
    overrides = COMMON + ["--training.max_steps", "2"]
    fsdp = run_training(CONFIG, tmp_path / "fsdp2", nproc=2, cwd=REPO, overrides=overrides)
    both = run_training(CONFIG, tmp_path / "tp2xfsdp2", nproc=4, cwd=REPO,
                        overrides=overrides + ["--parallel.tp_size", "2"])
    _assert_same_curve(both, fsdp)


def _weights(directory: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for f in sorted(directory.glob("*.safetensors")):
        out.update(load_file(f))
    return out


def test_checkpoints_reshard_between_tp2_and_tp1_and_the_export_is_exact(tmp_path):
    overrides = COMMON + ["--training.max_steps", "4", "--training.save_steps", "2"]
    single = run_training(CONFIG, tmp_path / "single", nproc=1, cwd=REPO, overrides=overrides)
    tp = run_training(CONFIG, tmp_path / "tp2", nproc=2, cwd=REPO,
                      overrides=overrides + ["--parallel.tp_size", "2", "--training.export_hf_at_end", "true"])
    _assert_same_curve(tp, single)
    # Resume each run's step-2 checkpoint under the other layout: the curve goes on where it left.
    for source, nproc, extra in (("tp2", 1, []), ("single", 2, ["--parallel.tp_size", "2"])):
        run = tmp_path / f"{source}-resumed"
        run.mkdir()
        shutil.copytree(tmp_path / source / "checkpoint-2", run / "checkpoint-2")
        resumed = run_training(CONFIG, run, nproc=nproc, cwd=REPO, overrides=overrides + extra)
        assert resumed[0]["resumed_from"].endswith("checkpoint-2")
        curve, want = loss_curve(resumed), loss_curve(single)
        assert sorted(curve) == [3, 4]
        assert [curve[s] for s in (3, 4)] == pytest.approx([want[s] for s in (3, 4)], rel=RTOL)
    # The export the TP run wrote (its ranks gather the tp shards) equals exporting its last checkpoint
    # in one process (DCP reads it without the tp split).
    assert main(["export", "--format", "hf", str(tmp_path / "tp2" / "checkpoint-4"), str(tmp_path / "one")]) == 0
    in_run, offline = _weights(tmp_path / "tp2" / "hf"), _weights(tmp_path / "one")
    assert sorted(in_run) == sorted(offline) and len(in_run) > 0
    for name, tensor in offline.items():
        assert torch.equal(in_run[name], tensor), name
