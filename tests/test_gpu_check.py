"""benchmarks/gpu_check.sh --dry-run: the prepared GPU check runs its stages on tiny shapes on the CPU and
writes its summary, so the script is known to work before a GPU comes. The train stage's commands are
the packages' tune_tiny.sh, which each package's test_launch.py runs; its dry run (about 2 minutes) is
in `nox -s slow`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from shardzoo.testing import training_env

REPO = Path(__file__).resolve().parents[1]
STAGES = ["op-tests", "qwen3-step", "moe-layer", "wan-step"]


def dry_run(out: Path, stages: list[str]) -> dict:
    proc = subprocess.run(["bash", str(REPO / "benchmarks/gpu_check.sh"), "--dry-run", "--out", str(out),
                           "--only", *stages], capture_output=True, text=True, cwd=REPO, timeout=900,
                          env=training_env())
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
