"""The launch scripts: tune_tiny.sh trains end to end on the image-text samples; the InternVL3.5-8B
config is complete (its config.json builds the released architecture and the plan fits 8 devices)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from shardzoo.config import load_config
from shardzoo.plan import plan_memory
from shardzoo.testing import run_launch_script

REPO = Path(__file__).resolve().parents[3]


def test_tune_tiny_runs_end_to_end(tmp_path):
    records, log = run_launch_script("models/internvl/tune_tiny.sh", tmp_path / "run", cwd=REPO,
                                     overrides=["--training.max_steps", "20"])
    assert [r["step"] for r in records] == [5, 10, 15, 20]
    assert records[-1]["loss"] < records[0]["loss"] - 1.0  # the loss visibly falls
    assert "image_sample 96" in log  # the image rows were all read


def test_8b_config_builds_the_released_architecture_and_fits():
    from shardzoo.train.hf_config import make_hf_config
    from shardzoo_internvl import SPEC

    folder = REPO / "models/internvl/configs/internvl3_5-8b"
    config = make_hf_config(json.loads((folder / "config.json").read_text()), SPEC, trust_remote_code=False)
    with torch.device("meta"):
        model = SPEC.build_model(config)
    vision = sum(p.numel() for p in model.model.vision_tower.parameters())
    total = sum(p.numel() for p in model.parameters())
    assert 0.28e9 < vision < 0.31e9  # InternViT-300M
    assert 8.4e9 < total < 8.6e9  # Qwen3-8B (8.19B) + ViT + projector
    cfg = load_config(REPO / "models/internvl/configs/tune_internvl3_5_8b.yaml",
                      ["--model.model_name_or_path", str(folder)])
    assert cfg.data.max_dynamic_patch == 12 and cfg.parallel.param_dtype == "bf16"
    plan = plan_memory(cfg, 8)
    assert plan.total < 40 * 2**30


def test_16k_tensor_parallel_config_is_sized_by_plan():
    folder = str(REPO / "models/internvl/configs/internvl3_5-8b")
    config = REPO / "models/internvl/configs/tune_internvl3_5_8b_16k_tp.yaml"
    cfg = load_config(config, ["--model.model_name_or_path", folder])
    assert cfg.parallel.tp_size == 2 and cfg.data.cutoff_len == 16384
    tp = plan_memory(cfg, 8)
    one = plan_memory(load_config(config, ["--model.model_name_or_path", folder, "--parallel.tp_size", "1"]), 8)
    assert "tp 2" in tp.mesh
    # The language model's gathered weights and activations halve; the vision tower, sharded over the 4
    # data ranks instead of 8, adds its share to the states.
    assert 0.5 * one.activations < tp.activations < 0.6 * one.activations
    assert tp.gathered < 0.55 * one.gathered
    assert tp.params < 1.05 * one.params
    assert tp.total < 0.9 * one.total and tp.total < 27 * 2**30
