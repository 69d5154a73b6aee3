"""Repo-level: the `shardzoo` command as users type it."""

from __future__ import annotations

import re
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
    assert ("linear_cross_entropy", "chunked", "bound") in rows
    assert ("rms_norm", "autograd_fn", "bound") in rows and ("rms_norm", "reference", "available") in rows


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
    assert re.search(r"model.model_id: 'qwen9' is not a registered model package \(registered: [a-z0-9_, ]*qwen3",
                     proc.stderr), proc.stderr


def test_nan_loss_stops_with_a_clear_message(tmp_path):
    proc = shardzoo("train", "models/qwen3/configs/tune_qwen3_tiny.yaml", "--training.lr", "1e30",
                    "--training.max_steps", "5", "--training.warmup_ratio", "0", "--training.max_grad_norm", "0",
                    "--training.output_dir", str(tmp_path), "--training.progress_bar", "false")
    # A user-caused stop: one line, exit 2, no traceback; SHARDZOO_DEBUG=1 brings the traceback back.
    assert proc.returncode == 2
    assert re.search(r"^training diverged: step \d+: loss .* is not finite; the weights were not updated",
                     proc.stderr, re.M), proc.stderr
    assert "Traceback" not in proc.stderr


def test_debug_switch_shows_the_traceback_of_a_user_error():
    import os

    proc = subprocess.run([sys.executable, "-m", "shardzoo", "train", "models/qwen3/configs/tune_qwen3_tiny.yaml",
                           "--training.lr", "fast"], capture_output=True, text=True, cwd=REPO, timeout=300,
                          env={**os.environ, "SHARDZOO_DEBUG": "1"})
    assert proc.returncode != 0 and "Traceback" in proc.stderr
    assert "ConfigError: training.lr: expected a number, got 'fast'" in proc.stderr


def test_packed_and_pretraining_runs_log_their_data_and_its_wait(tmp_path):
    import json

    corpus = tmp_path / "corpus.jsonl"
    answers = [json.loads(line)["output"] for line in (REPO / "data/alpaca_sample.jsonl").read_text().splitlines()]
    corpus.write_text("".join(json.dumps({"text": " ".join(answers[i:i + 5])}) + "\n" for i in range(300)))
    common = ["--training.max_steps", "3", "--training.progress_bar", "false", "--training.logging_steps", "1"]
    for name, extra in (("packed", ["--data.packing", "true"]),
                        ("mg", ["--data.data_manager_type", "mg", "--data.dataset", str(corpus)])):
        out = tmp_path / name
        proc = shardzoo("train", "models/qwen3/configs/tune_qwen3_tiny.yaml", "--training.output_dir", str(out),
                        *common, *extra)
        assert proc.returncode == 0, proc.stderr
        assert "data: " in proc.stderr and "skipped: none" in proc.stderr
        records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        assert len(records) == 3 and all(0 <= r["data_wait_pct"] < 100 for r in records)
    assert "[mg 300]" in proc.stderr


def test_packing_is_refused_where_documents_would_attend_to_each_other(tmp_path):
    import pytest
    from shardzoo.config import ConfigError, config_from_dict
    from shardzoo.train.trainer import train

    (tmp_path / "config.json").write_text('{"model_type": "llama", "architectures": ["LlamaForCausalLM"]}')
    cfg = config_from_dict({"model": {"model_name_or_path": str(tmp_path), "train_from_scratch": True,
                                      "tokenizer_name_or_path": str(REPO / "data/tokenizer")},
                            "data": {"dataset": "alpaca_sample", "packing": True},
                            "training": {"output_dir": str(tmp_path)}})
    with pytest.raises(ConfigError, match="data.packing: the transformers AutoModel path cannot keep attention"):
        train(cfg)
