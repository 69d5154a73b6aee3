"""The launch scripts: tune_tiny.sh runs end to end (also with EP=2); tune_20b.sh and its config are complete."""

from __future__ import annotations

import json
from pathlib import Path

from shardzoo.config import load_config
from shardzoo.parallel.mesh_shape import mesh_shape
from shardzoo.testing import run_launch_script

REPO = Path(__file__).resolve().parents[3]


def test_tune_tiny_runs_end_to_end_with_expert_parallel(tmp_path):
    records, _ = run_launch_script("models/gpt_oss/tune_tiny.sh", tmp_path / "run", cwd=REPO,
                                   env={"OMP_NUM_THREADS": "1", "NPROC": "2"},
                                   overrides=["--training.max_steps", "10", "--parallel.ep_size", "2",
                                              "--training.per_device_train_batch_size", "4"])
    assert [r["step"] for r in records] == [5, 10]
    for key in ("loss", "grad_norm", "tokens_per_s", "mfu", "aux_loss"):
        assert all(isinstance(r[key], float) for r in records), key
    # 4 experts, top-2, 8 rows of <= 256 tokens per step: every expert load is a count in range.
    assert all(0 <= r["expert_tokens_min"] <= r["expert_tokens_max"] <= 2 * 8 * 256 for r in records)
    assert records[-1]["loss"] < records[0]["loss"]


def test_tune_20b_script_and_config_are_complete():
    cfg = load_config(REPO / "models/gpt_oss/configs/tune_gpt_oss_20b_4k.yaml",
                      ["--parallel.ep_size", "4"])
    assert cfg.model.model_id == "gpt_oss" and not cfg.model.train_from_scratch
    assert cfg.data.cutoff_len == 4096 and cfg.data.template == "gpt_oss"
    assert cfg.parallel.param_dtype == "bf16" and cfg.parallel.reduce_dtype == "fp32"
    shape = mesh_shape(cfg.parallel, 8)
    assert (shape.ep_fsdp, shape.ep) == (2, 4)
    script = (REPO / "models/gpt_oss/tune_20b.sh").read_text()
    assert "tune_gpt_oss_20b_4k.yaml" in script and "EP_SIZE=${EP_SIZE:-" in script and "CP_SIZE" in script


def test_20b_config_json_builds_the_released_architecture():
    import torch
    from shardzoo.train.hf_config import make_hf_config
    from shardzoo_gpt_oss import SPEC

    raw = json.loads((REPO / "models/gpt_oss/configs/gpt-oss-20b/config.json").read_text())
    config = make_hf_config(raw, SPEC, trust_remote_code=False)
    with torch.device("meta"):
        model = SPEC.build_model(config)
    total = sum(p.numel() for p in model.parameters())
    assert 20.0e9 < total < 22.0e9  # gpt-oss-20b: 20.9B parameters
    assert model.model.layers[0].self_attn.sliding_window == 128
    assert model.model.layers[1].self_attn.sliding_window is None
