"""The multi-device launch scripts: each package script hands its config and model name to the shared
scripts/launch_multinode.sh, which takes the cluster from the environment and refuses a missing
checkpoint before starting torchrun."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# (script, what it needs besides MODEL_DIR before it reaches the checkpoint check, the model it names)
SCRIPTS = [("models/qwen3/tune_8b.sh", {}, "Qwen3-8B"), ("models/gpt_oss/tune_20b.sh", {}, "gpt-oss-20b"),
           ("models/internvl/tune_8b.sh", {}, "InternVL3_5-8B-HF"),
           ("models/wan/tune_1_3b.sh", {}, "Wan2.1-T2V-1.3B-Diffusers/transformer"),
           ("models/wan/tune_14b.sh", {}, "Wan2.1-T2V-14B-Diffusers/transformer"),
           ("models/wan/tune_14b.sh", {"VARIANT": "i2v"}, "Wan2.1-I2V-14B-480P-Diffusers/transformer"),
           ("models/wan/tune_a14b.sh", {"EXPERT": "high"}, "Wan2.2-T2V-A14B-Diffusers/transformer"),
           ("models/wan/tune_a14b.sh", {"EXPERT": "low", "VARIANT": "i2v"}, "Wan2.2-I2V-A14B-Diffusers/transformer_2")]


def test_shared_launcher_reads_the_cluster_from_the_environment():
    script = (REPO / "scripts/launch_multinode.sh").read_text()
    for var in ("NPUS_PER_NODE", "NNODES", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT"):
        assert f"{var}=${{{var}:-" in script, var
    assert "source scripts/launch_env.sh" in script and "-m shardzoo train" in script


@pytest.mark.parametrize("script,env,model", SCRIPTS)
def test_package_script_refuses_a_missing_checkpoint(script, env, model):
    path = REPO / script
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0
    assert "scripts/launch_multinode.sh" in path.read_text()
    proc = subprocess.run(["bash", str(path)], capture_output=True, text=True,
                          env={**os.environ, "MODEL_DIR": "/nonexistent", **env})
    assert proc.returncode == 2
    assert f"MODEL_DIR=/nonexistent has no config.json: download {model}" in proc.stderr


def test_wan_a14b_script_needs_an_expert():
    proc = subprocess.run(["bash", str(REPO / "models/wan/tune_a14b.sh")], capture_output=True, text=True,
                          env={k: v for k, v in os.environ.items() if k != "EXPERT"})
    assert proc.returncode == 2 and "set EXPERT=high or EXPERT=low" in proc.stderr


@pytest.mark.parametrize("script", ["models/wan/tune_14b.sh", "models/wan/tune_a14b.sh", "models/wan/tune_tiny.sh"])
def test_wan_scripts_name_their_variants(script):
    proc = subprocess.run(["bash", str(REPO / script)], capture_output=True, text=True,
                          env={**os.environ, "VARIANT": "ti2v", "EXPERT": "high"})
    assert proc.returncode == 2 and "VARIANT must be t2v or i2v, got 'ti2v'" in proc.stderr


def test_slurm_batch_script_starts_one_launcher_per_node(tmp_path):
    """scripts/slurm_train.sbatch under stand-ins for SLURM's srun/scontrol and torchrun: each node's task
    runs the package script with the job's node count, its own node rank and the first node as the
    rendezvous host, through the same launch_multinode.sh (and launch_env.sh) as a run started by hand."""
    bin_dir, model_dir = tmp_path / "bin", tmp_path / "model"
    bin_dir.mkdir()
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    stubs = {
        # A long host list (a big job's): reading only its first line must not cut the pipe (SIGPIPE).
        "scontrol": 'printf "node-a\\nnode-b\\n"; seq -f "node-%g" 200000',
        # SLURM runs the command once per node with that node's SLURM_NODEID.
        "srun": 'while [[ "$1" == --* ]]; do shift; done\nfor id in 0 1; do SLURM_NODEID=$id "$@"; done',
        "torchrun": f'echo "TORCHRUN $* OMP=$OMP_NUM_THREADS" >> {tmp_path / "calls.txt"}',
    }
    for name, body in stubs.items():
        (bin_dir / name).write_text(f"#!/usr/bin/env bash\n{body}\n")
        (bin_dir / name).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_NNODES": "2", "SLURM_JOB_ID": "1234",
           "SLURM_JOB_NODELIST": "node-[a-b]", "SLURM_SUBMIT_DIR": str(REPO), "MODEL_DIR": str(model_dir),
           "NPUS_PER_NODE": "4"}
    env.pop("OMP_NUM_THREADS", None)
    proc = subprocess.run(["bash", str(REPO / "scripts/slurm_train.sbatch"), "models/qwen3/tune_8b.sh",
                           "--training.max_steps", "2"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    calls = (tmp_path / "calls.txt").read_text().splitlines()
    assert len(calls) == 2
    for node_rank, call in enumerate(calls):
        assert f"--nproc-per-node 4 --nnodes 2 --node-rank {node_rank} --master-addr node-a --master-port 21234" in call
        assert "-m shardzoo train models/qwen3/configs/" in call and f"--model.model_name_or_path {model_dir}" in call
        assert call.endswith("--training.max_steps 2 OMP=8")  # the overrides pass through; launch_env.sh ran


def test_slurm_batch_script_outside_a_job_says_so():
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    proc = subprocess.run(["bash", str(REPO / "scripts/slurm_train.sbatch"), "models/qwen3/tune_8b.sh"],
                          capture_output=True, text=True, env=env, cwd=REPO)
    assert proc.returncode != 0 and "not inside a SLURM job: submit with sbatch" in proc.stderr
