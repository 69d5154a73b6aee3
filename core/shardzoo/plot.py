"""`shardzoo plot RUN_DIR [RUN_DIR ...] [--out FILE]`: loss (and the evaluation loss, dashed), lr, grad
norm and throughput over steps from each run's metrics.jsonl, the runs overlaid, as one PNG. matplotlib
is an optional extra (`pip install shardzoo[plot]`)."""

from __future__ import annotations

import json
from pathlib import Path

from .errors import ConfigError, DataError

PANELS = (("loss", "loss"), ("lr", "learning rate"), ("grad_norm", "grad norm"), ("tokens_per_s", "tokens/s"))


def read_curves(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """key -> [(step, value)], the last record of a step winning (a resumed run repeats steps)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        raise DataError(f"{run_dir}: no metrics.jsonl; give a training.output_dir")
    by_step: dict[int, dict] = {}
    evals: dict[int, float] = {}
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{lineno}: not a JSON record ({exc})") from None
        if "loss" in record:
            by_step[record["step"]] = record
        elif "eval_loss" in record:
            evals[record["step"]] = record["eval_loss"]
    curves = {key: [(s, r[key]) for s, r in sorted(by_step.items()) if key in r] for key, _ in PANELS}
    return {**curves, "eval_loss": sorted(evals.items())}


def plot_runs(run_dirs: list[Path], out: Path) -> Path:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("shardzoo plot: matplotlib is not installed; pip install matplotlib "
                          "(or the shardzoo[plot] extra)") from None
    curves = {run: read_curves(run) for run in run_dirs}
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), constrained_layout=True)
    for ax, (key, title) in zip(axes.flat, PANELS):
        for run, series in curves.items():
            if series[key]:
                steps, values = zip(*series[key])
                ax.plot(steps, values, marker="o", markersize=3, label=run.name)
            if key == "loss" and series["eval_loss"]:
                steps, values = zip(*series["eval_loss"])
                ax.plot(steps, values, linestyle="--", marker="s", markersize=3, label=f"{run.name} (eval)")
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes.flat[0].legend()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
