"""The multi-device launch scripts: each package script hands its config and model name to the shared
scripts/launch_multinode.sh, which takes the cluster from the environment and refuses a missing
checkpoint before starting torchrun."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = {"models/qwen3/tune_8b.sh": "Qwen3-8B", "models/gpt_oss/tune_20b.sh": "gpt-oss-20b",
           "models/internvl/tune_8b.sh": "InternVL3_5-8B-HF",
           "models/wan/tune_1_3b.sh": "Wan2.1-T2V-1.3B-Diffusers/transformer",
           "models/wan/tune_14b.sh": "Wan2.1-T2V-14B-Diffusers/transformer",
           "models/wan/tune_a14b.sh": "Wan2.2-T2V-A14B-Diffusers/transformer"}
# What a script needs besides MODEL_DIR before it reaches the checkpoint check.
SCRIPT_ENV = {"models/wan/tune_a14b.sh": {"EXPERT": "high"}}


def test_shared_launcher_reads_the_cluster_from_the_environment():
    script = (REPO / "scripts/launch_multinode.sh").read_text()
    for var in ("NPUS_PER_NODE", "NNODES", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT"):
        assert f"{var}=${{{var}:-" in script, var
    assert "source scripts/launch_env.sh" in script and "-m shardzoo train" in script


@pytest.mark.parametrize("script,model", list(SCRIPTS.items()))
def test_package_script_refuses_a_missing_checkpoint(script, model):
    path = REPO / script
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0
    assert "scripts/launch_multinode.sh" in path.read_text()
    proc = subprocess.run(["bash", str(path)], capture_output=True, text=True,
                          env={**os.environ, "MODEL_DIR": "/nonexistent", **SCRIPT_ENV.get(script, {})})
    assert proc.returncode == 2
    assert f"MODEL_DIR=/nonexistent has no config.json: download {model}" in proc.stderr


def test_wan_a14b_script_needs_an_expert():
    proc = subprocess.run(["bash", str(REPO / "models/wan/tune_a14b.sh")], capture_output=True, text=True,
                          env={k: v for k, v in os.environ.items() if k != "EXPERT"})
    assert proc.returncode == 2 and "set EXPERT=high or EXPERT=low" in proc.stderr
