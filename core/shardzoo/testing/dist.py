"""Launch a real training run (torchrun, N CPU ranks over gloo) and read its metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def run_training(config: str | Path, output_dir: str | Path, *, nproc: int = 1, overrides: list[str] = (),
                 timeout: int = 600, cwd: str | Path | None = None) -> list[dict]:
    """Run `shardzoo train` under torchrun and return the metrics records; raise with the log on failure."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
           "-m", "shardzoo", "train", str(config), "--training.output_dir", str(output_dir),
           "--training.progress_bar", "false", *overrides]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"training failed (exit {proc.returncode}): {' '.join(cmd)}\n"
                           f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-8000:]}")
    return read_metrics(output_dir)


def read_metrics(output_dir: str | Path) -> list[dict]:
    path = Path(output_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
