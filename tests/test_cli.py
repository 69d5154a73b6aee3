"""Repo-level: the `shardzoo` command as users type it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def shardzoo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "shardzoo", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=300)


def test_ops_prints_the_bound_backend_per_op():
    proc = shardzoo("ops", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "device: cpu"
    rows = {tuple(line.split()[:3]) for line in lines[2:]}
    assert ("attention", "sdpa", "bound") in rows
    assert ("cross_entropy", "chunked", "bound") in rows
    assert ("rms_norm", "reference", "bound") in rows


def test_models_lists_installed_packages():
    proc = shardzoo("models")
    assert proc.returncode == 0, proc.stderr
    assert "qwen3  shardzoo-qwen3 0.1.0  architectures: Qwen3ForCausalLM" in proc.stdout


def test_config_errors_exit_2_with_the_key(tmp_path):
    proc = shardzoo("train", "models/qwen3/configs/tune_qwen3_tiny.yaml", "--training.lr", "fast")
    assert proc.returncode == 2
    assert "config error: training.lr: expected a number, got 'fast'" in proc.stderr
    proc = shardzoo("train", "models/qwen3/configs/tune_qwen3_tiny.yaml", "--model.model_id", "qwen9",
                    "--training.output_dir", str(tmp_path))
    assert proc.returncode == 2
    assert "model.model_id: 'qwen9' is not a registered model package (registered: qwen3)" in proc.stderr


def test_nan_loss_stops_with_a_clear_message(tmp_path):
    proc = shardzoo("train", "models/qwen3/configs/tune_qwen3_tiny.yaml", "--training.lr", "1e30",
                    "--training.max_steps", "5", "--training.warmup_ratio", "0", "--training.max_grad_norm", "0",
                    "--training.output_dir", str(tmp_path), "--training.progress_bar", "false")
    assert proc.returncode != 0
    assert "TrainingDiverged" in proc.stderr and "is not finite; the weights were not updated" in proc.stderr
