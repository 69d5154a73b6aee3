"""MindSpeed-LLM's `fsdp_modules: [model.layers.{*}, model.embed_tokens, lm_head]`: the embedding and the
head as FSDP units of their own train, tied and untied, with the losses of the default wrapping (the
head's weight is gathered for the chunked loss; a tied weight forms one group with both modules)."""

from __future__ import annotations

from pathlib import Path

import pytest
from shardzoo.testing import run_training

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "core/tests/configs/tiny_lm.yaml"
COMMON = ["--training.max_steps", "3", "--training.logging_steps", "1", "--data.max_samples", "32",
          "--training.per_device_train_batch_size", "4"]
# The same samples, parameters and reduce-scatter sums: only which parameters share a flat
# all-gather buffer changes, which moves no value; what remains is fp32 round-off in the sums
# (the bound is 10x tighter than test_distributed's, whose runs also reorder the batch over ranks).
RTOL = 1e-6


@pytest.fixture(scope="module", params=[True, False], ids=["tied", "untied"])
def default(request, tmp_path_factory):
    tie = request.param
    out = tmp_path_factory.mktemp("default")
    records = run_training(CONFIG, out, nproc=2, cwd=REPO,
                           overrides=COMMON + ["--model.hf_config.tie_word_embeddings", str(tie).lower()])
    return tie, [r["loss"] for r in records]


@pytest.mark.parametrize("units", [["model.layers.{*}", "model.embed_tokens", "lm_head"],
                                   ["model.layers.{*}", "lm_head"]], ids=["embed+head", "head"])
def test_embedding_and_head_as_units_train_like_the_default(default, units, tmp_path):
    tie, want = default
    records = run_training(CONFIG, tmp_path, nproc=2, cwd=REPO,
                           overrides=COMMON + ["--model.hf_config.tie_word_embeddings", str(tie).lower(),
                                               "--parallel.fsdp_modules", str(units)])
    assert [r["loss"] for r in records] == pytest.approx(want, rel=RTOL)
