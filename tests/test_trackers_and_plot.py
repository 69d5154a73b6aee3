"""training.report_to (TensorBoard, W&B offline) and `shardzoo plot`: optional, never required. Repo-level:
the `tests` session installs the wandb and plot extras; the core alone needs neither."""

from __future__ import annotations

import copy
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from shardzoo.config import ConfigError, config_from_dict
from shardzoo.testing import training_env
from shardzoo.train import trackers
from shardzoo.train.trainer import train

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def minimal_raw():
    return {"model": {"model_id": "tiny_lm", "train_from_scratch": True,
                      "tokenizer_name_or_path": str(REPO / "data/tokenizer")},
            "data": {"dataset": "alpaca_sample", "dataset_dir": str(REPO / "data")}, "training": {}}


def _run(minimal_raw, out, data=None, **training):
    raw = copy.deepcopy(minimal_raw)
    raw["data"].update(data or {})
    raw["model"]["hf_config"] = {"vocab_size": 1024, "hidden_size": 32, "intermediate_size": 64,
                                 "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2}
    raw["data"]["max_samples"] = 32
    raw["training"].update(output_dir=str(out), max_steps=3, progress_bar=False, device="cpu",
                           per_device_train_batch_size=2, **training)
    return train(config_from_dict(raw))


def test_a_tracker_asked_for_but_missing_is_refused(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(ConfigError, match="training.report_to: wandb is not installed; pip install wandb"):
        trackers.chosen(["wandb"])
    assert trackers.chosen(["none"]) == []


def test_wandb_offline_logs_the_steps_without_network(minimal_raw, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    _run(minimal_raw, tmp_path / "run", data={"val_size": 4}, report_to=["wandb"], eval_steps=2)
    (log,) = (tmp_path / "run" / "wandb").glob("offline-run-*/run-*.wandb")
    data = log.read_bytes()
    assert b"loss" in data and b"grad_norm" in data and b"eval_loss" in data  # evaluation goes to trackers too


def test_plot_overlays_runs_in_one_png(minimal_raw, tmp_path):
    _run(minimal_raw, tmp_path / "a", lr=1e-3)
    _run(minimal_raw, tmp_path / "b", data={"val_size": 4}, lr=3e-3)
    from shardzoo.plot import read_curves

    curves = read_curves(tmp_path / "b")
    assert [s for s, _ in curves["loss"]] == [1, 2, 3] and [s for s, _ in curves["eval_loss"]] == [3]
    assert read_curves(tmp_path / "a")["eval_loss"] == []
    out = tmp_path / "curves.png"
    proc = subprocess.run([sys.executable, "-m", "shardzoo", "plot", str(tmp_path / "a"), str(tmp_path / "b"),
                           "--out", str(out)], capture_output=True, text=True, cwd=REPO, env=training_env(),
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000
    proc = subprocess.run([sys.executable, "-m", "shardzoo", "plot", str(tmp_path)], capture_output=True, text=True,
                          cwd=REPO, env=training_env(), timeout=120)
    assert proc.returncode == 2 and "no metrics.jsonl" in proc.stderr
