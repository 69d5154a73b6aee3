"""Launch a real training run (torchrun, N CPU ranks over gloo) and read its metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def training_command(config: str | Path, output_dir: str | Path, nproc: int, overrides: list[str]) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
            "-m", "shardzoo", "train", str(config), "--training.output_dir", str(output_dir),
            "--training.progress_bar", "false", *overrides]


def training_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", **(extra or {})}


def launch_training(config: str | Path, output_dir: str | Path, *, nproc: int = 1, overrides: list[str] = (),
                    timeout: int = 600, cwd: str | Path | None = None,
                    env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run `shardzoo train` under torchrun to the end, whatever its exit status."""
    return subprocess.run(training_command(config, output_dir, nproc, list(overrides)), capture_output=True,
                          text=True, timeout=timeout, cwd=cwd, env=training_env(env))


def run_training(config: str | Path, output_dir: str | Path, *, nproc: int = 1, overrides: list[str] = (),
                 timeout: int = 600, cwd: str | Path | None = None, env: dict[str, str] | None = None) -> list[dict]:
    """Run `shardzoo train` under torchrun and return the metrics records; raise with the log on failure."""
    proc = launch_training(config, output_dir, nproc=nproc, overrides=overrides, timeout=timeout, cwd=cwd, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"training failed (exit {proc.returncode}): {' '.join(proc.args)}\n"
                           f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-8000:]}")
    return read_metrics(output_dir)


def run_launch_script(script: str | Path, output_dir: str | Path, *, cwd: str | Path, overrides: list[str] = (),
                      env: dict[str, str] | None = None, timeout: int = 600) -> tuple[list[dict], str]:
    """Run a package's launch script (e.g. models/qwen3/tune_tiny.sh) with config overrides into
    `output_dir`; raise with its log on failure. Returns (metrics records, the run's stderr log)."""
    proc = subprocess.run(["bash", str(script), "--training.output_dir", str(output_dir),
                           "--training.progress_bar", "false", *overrides], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "2", **(env or {})})
    if proc.returncode != 0:
        raise RuntimeError(f"{script} failed (exit {proc.returncode})\n{proc.stderr[-6000:]}")
    return read_metrics(output_dir), proc.stderr


def read_metrics(output_dir: str | Path) -> list[dict]:
    path = Path(output_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def loss_curve(records: list[dict]) -> dict[int, float]:
    """step -> loss, the last record of each step winning (a resumed run repeats the steps after its
    checkpoint)."""
    return {r["step"]: r["loss"] for r in records if "loss" in r}
