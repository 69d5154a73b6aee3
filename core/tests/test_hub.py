"""`model_name_or_path: org/name` resolves through huggingface_hub's cache (here a cache built in a
temporary HF_HOME, offline): training and `plan` read the snapshot; a name the cache lacks ends in one
line naming the id, HF_HOME and the offline flag."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from shardzoo.testing import read_metrics, training_env

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "core/tests/configs/tiny_lm.yaml"
REVISION = "0123456789abcdef0123456789abcdef01234567"


def _hub_cache(home: Path, repo_id: str) -> Path:
    """What huggingface_hub leaves after a download: refs/main naming a snapshot folder of files."""
    repo = home / "hub" / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / REVISION
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)
    (snapshot / "config.json").write_text(json.dumps({
        "model_type": "shardzoo_tiny_lm", "architectures": ["TinyLMForCausalLM"], "vocab_size": 1024,
        "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "tie_word_embeddings": True}))
    return snapshot


def _shardzoo(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = training_env({"HF_HOME": str(home), "HF_HUB_OFFLINE": "1"})
    return subprocess.run([sys.executable, "-m", "shardzoo", *args], capture_output=True, text=True, cwd=REPO,
                          env=env, timeout=300)


def test_a_hub_name_trains_and_plans_from_the_cache(tmp_path):
    home = tmp_path / "hf_home"
    snapshot = _hub_cache(home, "shardzoo-test/tiny-lm")
    common = ["--model.model_name_or_path", "shardzoo-test/tiny-lm", "--model.hf_config", "{}",
              "--model.model_id", "null"]
    proc = _shardzoo("train", str(CONFIG), *common, "--training.output_dir", str(tmp_path / "out"),
                     "--training.max_steps", "2", "--training.logging_steps", "1", "--data.max_samples", "16",
                     home=home)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [r["step"] for r in read_metrics(tmp_path / "out") if "loss" in r] == [1, 2]
    saved = (tmp_path / "out" / "config.yaml").read_text()
    assert str(snapshot) in saved  # the run recorded where the model came from
    proc = _shardzoo("plan", str(CONFIG), "--world-size", "2", *common, home=home)
    assert proc.returncode == 0 and "parameters (sharded)" in proc.stdout, proc.stderr[-3000:]


def test_a_name_the_cache_lacks_offline_is_one_line(tmp_path):
    home = tmp_path / "hf_home"
    proc = _shardzoo("train", str(CONFIG), "--model.model_name_or_path", "shardzoo-test/missing", "--model.hf_config",
                     "{}", "--model.model_id", "null", "--training.output_dir", str(tmp_path / "out"), home=home)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("config error:")]
    assert "model.model_name_or_path: 'shardzoo-test/missing' is no local folder" in line
    assert f"HF_HOME={home}" in line and "HF_HUB_OFFLINE=1" in line
