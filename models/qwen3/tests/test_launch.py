"""The launch scripts: tune_tiny.sh runs end to end; tune_8b.sh and its configs are complete."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from shardzoo.config import load_config

REPO = Path(__file__).resolve().parents[3]


def test_tune_tiny_runs_end_to_end(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(["bash", "models/qwen3/tune_tiny.sh", "--training.max_steps", "20",
                           "--training.output_dir", str(out), "--training.progress_bar", "false"],
                          cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
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
    script = (REPO / "models/qwen3/tune_8b.sh").read_text()
    for var in ("NPUS_PER_NODE", "NNODES", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT"):
        assert f"{var}=${{{var}:-" in script, var
    assert "tune_qwen3_8b.yaml" in script
    proc = subprocess.run(["bash", "-n", str(REPO / "models/qwen3/tune_8b.sh")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
