"""The launch scripts: tune_tiny.sh runs end to end; tune_8b.sh and its configs are complete."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from shardzoo.config import load_config
from shardzoo.testing import run_launch_script

REPO = Path(__file__).resolve().parents[3]


def test_tune_tiny_runs_end_to_end(tmp_path):
    out = tmp_path / "run"
    records, _ = run_launch_script("models/qwen3/tune_tiny.sh", out, cwd=REPO, overrides=["--training.max_steps", "20"])
    assert [r["step"] for r in records] == [5, 10, 15, 20]
    for key in ("loss", "lr", "grad_norm", "tokens_per_s", "mfu", "peak_memory_gib"):
        assert all(isinstance(r[key], float) for r in records), key
    assert records[-1]["loss"] < records[0]["loss"] - 1.0  # the loss visibly falls
    assert all(r["tokens_per_s"] > 0 and 0 < r["mfu"] < 1 for r in records)
    assert (out / "config.yaml").is_file()


def test_tune_8b_script_and_config_are_complete():
    cfg = load_config(REPO / "models/qwen3/configs/tune_qwen3_8b.yaml")
    assert cfg.model.model_id == "qwen3" and not cfg.model.train_from_scratch
    assert cfg.parallel.param_dtype == "bf16" and cfg.parallel.reduce_dtype == "fp32"
    assert "tune_qwen3_8b.yaml" in (REPO / "models/qwen3/tune_8b.sh").read_text()  # the script's default


def test_32k_context_parallel_config_is_complete_and_fits():
    from shardzoo.parallel.mesh_shape import mesh_shape
    from shardzoo.plan import plan_memory

    cfg = load_config(REPO / "models/qwen3/configs/tune_qwen3_8b_32k_cp.yaml",
                      ["--model.model_name_or_path", str(REPO / "models/qwen3/configs/qwen3-8b")])
    assert cfg.data.cutoff_len == 32768 and cfg.parallel.cp_type == "ulysses"
    shape = mesh_shape(cfg.parallel, 8)
    assert (shape.dp, shape.cp) == (4, 2)
    raw = json.loads((REPO / "models/qwen3/configs/qwen3-8b/config.json").read_text())
    # Qwen3-8B: 32 query / 8 kv heads of 128, a native window of 40960 positions (no rope scaling).
    assert (raw["num_attention_heads"], raw["num_key_value_heads"], raw["head_dim"]) == (32, 8, 128)
    assert raw["rope_scaling"] is None and cfg.data.cutoff_len <= raw["max_position_embeddings"]
    plan = plan_memory(cfg, 8)
    assert "cp 2" in plan.mesh
    assert 8.0e9 * 4 / 8 < plan.params < 8.4e9 * 4 / 8  # Qwen3-8B (8.19B) fp32 master weights over 8 ranks
    assert plan.total < 40 * 2**30  # fits 40 GB devices with room; the 8 x 64 GB target has plenty


def _plan(config: str, model: str, world: int, *overrides: str):
    from shardzoo.plan import plan_memory

    cfg = load_config(REPO / "models/qwen3/configs" / config,
                      ["--model.model_name_or_path", str(REPO / "models/qwen3/configs" / model), *overrides])
    return cfg, plan_memory(cfg, world)


def test_tensor_parallel_configs_are_complete_and_sized_by_plan():
    cfg, tp2 = _plan("tune_qwen3_8b_32k_tp.yaml", "qwen3-8b", 8)
    assert cfg.parallel.tp_size == 2 and cfg.data.cutoff_len == 32768 and "tp 2" in tp2.mesh
    assert cfg.parallel.tp_colwise == ["*.q_proj", "*.k_proj", "*.v_proj", "*.gate_proj", "*.up_proj"]
    _, tp1 = _plan("tune_qwen3_8b_32k_tp.yaml", "qwen3-8b", 8, "--parallel.tp_size", "1")
    # FSDP already shards the states over all 8 ranks; TP halves what is gathered and (sequence parallel)
    # the activations, the rest stays (up to the norm weights, whole on each tp rank: 1e-4 of the model).
    assert tp2.params == pytest.approx(tp1.params, rel=1e-3)
    assert tp2.gathered == pytest.approx(0.5 * tp1.gathered, rel=1e-3)
    assert 0.5 * tp1.activations < tp2.activations < 0.6 * tp1.activations
    assert tp2.total < 30 * 2**30  # 27.2 GiB: room on the 40-64 GB devices its header names
    cfg, big = _plan("tune_qwen3_32b_tp.yaml", "qwen3-32b", 8)
    assert cfg.parallel.tp_size == 4 and "fsdp 1x2, tp 4" in big.mesh
    assert 32.5e9 * 4 / 8 < big.params < 33.0e9 * 4 / 8  # Qwen3-32B (32.8B) fp32 master weights over 8 ranks
    assert big.total < 0.85 * 80 * 2**30  # the 8 x 80 GB devices its header names (plan reads 80GB as GiB)
    assert "tune_qwen3_32b_tp.yaml" in (REPO / "models/qwen3/tune_32b.sh").read_text()
