"""A Qwen3 checkpoint trained on 2 gloo ranks exports to an HF folder that transformers loads with our
logits. The core's checkpoint tests (core/tests/test_checkpoint.py) cover resume, faults and damage on
its tiny model; this is the part only a model with a reference implementation can check."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from shardzoo.testing import run_training

REPO = Path(__file__).resolve().parents[3]
CONFIG = REPO / "models/qwen3/configs/tune_qwen3_tiny.yaml"
STEPS = 4
COMMON = ["--training.max_steps", str(STEPS), "--training.logging_steps", "1", "--data.max_samples", "96",
          "--training.per_device_train_batch_size", "4", "--training.save_steps", "4"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    run_training(CONFIG, out, nproc=2, cwd=REPO, overrides=COMMON + ["--training.export_hf_at_end", "true"])
    return out, None


def test_export_loads_in_transformers_with_our_logits(uninterrupted, tmp_path):
    from shardzoo.checkpoint.dcp_state import load_model_tensors, model_tensor_specs
    from shardzoo.testing.export_check import export_checked
    from shardzoo_qwen3 import Qwen3ForCausalLM
    from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen3Config

    ckpt, out = uninterrupted[0] / f"checkpoint-{STEPS}", tmp_path / "hf"
    export_checked(ckpt, out, REPO, "1MB")
    AutoTokenizer.from_pretrained(str(out))

    hf = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32, attn_implementation="eager").eval()
    config = Qwen3Config.from_pretrained(str(out))
    ours = Qwen3ForCausalLM(config).eval()
    tensors = load_model_tensors(ckpt / "state", model_tensor_specs(ckpt / "state"))
    missing, unexpected = ours.load_state_dict(tensors, strict=False)
    assert missing == ["lm_head.weight"] and unexpected == []  # tied: the embedding fills both
    ids = torch.randint(0, config.vocab_size, (2, 17), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        # fp32 both; the implementations order reductions differently (see test_parity.TOL).
        torch.testing.assert_close(ours(ids), hf(input_ids=ids).logits, atol=2e-5, rtol=2e-5)

    # The export written at the end of training holds the same weights.
    from shardzoo.checkpoint import iter_safetensors

    at_end = dict(iter_safetensors(uninterrupted[0] / "hf"))
    exported = dict(iter_safetensors(out))
    assert sorted(at_end) == sorted(exported)
    assert all(torch.equal(at_end[k], exported[k]) for k in exported)


def test_export_on_two_ranks_writes_the_same_files(uninterrupted, tmp_path):
    """`torchrun ... shardzoo export`: the ranks write disjoint weight files, byte for byte the files one
    process writes (bf16, so the cast is covered too), and no temporary file is left."""
    import subprocess
    import sys

    from shardzoo.testing import training_env

    ckpt = uninterrupted[0] / f"checkpoint-{STEPS}"
    args = ["-m", "shardzoo", "export", str(ckpt), "--format", "hf", "--dtype", "bfloat16", "--max-shard-size", "200KB"]
    one = subprocess.run([sys.executable, *args, str(tmp_path / "one")], capture_output=True, text=True, cwd=REPO,
                         timeout=300, env=training_env())
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          *args, str(tmp_path / "two")], capture_output=True, text=True, cwd=REPO, timeout=300,
                         env=training_env())
    assert one.returncode == 0 and two.returncode == 0, one.stderr[-3000:] + two.stderr[-3000:]
    names = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "two").iterdir())
    assert sum(n.endswith(".safetensors") for n in names) > 2 and not any("partial" in n for n in names)
    for name in names:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
