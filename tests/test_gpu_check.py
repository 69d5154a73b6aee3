"""benchmarks/gpu_check.sh --dry-run: the prepared GPU check runs its stages on tiny shapes on the CPU and
writes its summary, so the script is known to work before a GPU comes. The train stage's commands are
the packages' tune_tiny.sh, which each package's test_launch.py runs; its dry run (about 2 minutes) is
in `nox -s slow`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from shardzoo.testing import training_env
from shardzoo.testing.scripts import load_script

REPO = Path(__file__).resolve().parents[1]
STAGES = ["op-tests", "qwen3-step", "moe-layer", "wan-step"]


def dry_run(out: Path, stages: list[str], env: dict | None = None) -> dict:
    proc = subprocess.run(["bash", str(REPO / "benchmarks/gpu_check.sh"), "--dry-run", "--out", str(out),
                           "--only", *stages], capture_output=True, text=True, cwd=REPO, timeout=900,
                          env=env or training_env())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (out / "summary.md").is_file()
    return json.loads((out / "summary.json").read_text())


def test_dry_run_runs_every_benchmark_stage(tmp_path):
    summary = dry_run(tmp_path, STAGES)
    stages = summary["stages"]
    assert summary["dry_run"] and list(stages) == STAGES
    assert all(s["status"] == "ok" for s in stages.values()), stages
    assert "passed" in stages["op-tests"]["figures"]["pytest"]
    for step in ("qwen3-step", "wan-step"):
        figures = stages[step]["figures"]
        assert figures["tokens_per_s"] > 0 and figures["reference_tokens_per_s"] > 0
        assert figures["first_loss_relative_difference"] < 1e-4  # the same weights on both sides
    assert stages["moe-layer"]["figures"]["max_abs_grad_difference"] < 1e-5  # fp32, same routing


def without_diffusers(tmp_path: Path) -> dict:
    """The environment of a machine without diffusers (the GPU machine's image has none)."""
    (tmp_path / "hidden").mkdir()
    (tmp_path / "hidden" / "diffusers.py").write_text("raise ImportError('diffusers hidden by the test')\n")
    env = training_env()
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(tmp_path / "hidden"), env.get("PYTHONPATH")) if p)
    return env


def load_check():
    return load_script(REPO / "benchmarks" / "gpu_check.py")


def test_without_diffusers_the_wan_stage_and_run_are_skipped_and_say_so(tmp_path, monkeypatch):
    stages = dry_run(tmp_path / "out", ["wan-step"], without_diffusers(tmp_path))["stages"]
    assert stages["wan-step"]["status"] == "skipped" and "diffusers" in stages["wan-step"]["detail"]

    check = load_check()
    monkeypatch.setattr(check, "diffusers_missing", lambda: "diffusers is not installed")
    commands = check.train(tmp_path, True)
    assert len(commands) == 5 and not any("models/wan/tune_tiny.sh" in c for c in commands)
    assert check.train_figures(tmp_path, "")["wan"] == "skipped: diffusers is not installed"


@pytest.mark.slow
def test_dry_run_trains_every_package(tmp_path):
    stages = dry_run(tmp_path, ["train"])["stages"]
    figures = stages["train"]["figures"]
    assert stages["train"]["status"] == "ok"
    assert {"qwen3", "gpt_oss", "internvl", "wan", "qwen3-compiled", "qwen3-offload-ignored"} <= set(figures)
    assert all(len(figures[k]) == 2 for k in ("qwen3", "gpt_oss", "internvl", "wan"))
    assert figures["compiled_vs_eager_max_rel"] < 1e-4  # fp32 on the CPU: the compiled blocks compute the same
    # Offload on the CPU moves nothing; an ignored norm computes as the sharded one (fp32): the same losses.
    assert figures["offload-ignored_vs_eager_max_rel"] < 1e-5


def test_stages_find_the_torchrun_beside_the_checks_python(tmp_path, monkeypatch):
    """The launch scripts call torchrun; a Python run by its path (its bin folder not on PATH, as PYTHON=...
    gpu_check.sh does) must still launch its own, not another environment's or none."""
    check = load_check()
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    stage = check.Stage("where", 30, lambda folder, dry: [["bash", "-c", f"command -v torchrun > {folder}/where"]])
    assert check.run_stage(stage, tmp_path, dry=True).status == "ok"
    assert Path((tmp_path / "where" / "where").read_text().strip()).parent == Path(sys.executable).parent
