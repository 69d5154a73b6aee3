"""Experiment trackers for the step metrics (training.report_to): TensorBoard and Weights & Biases,
each optional. Asked for but not installed is a ConfigError before anything is built; not asked for
(null), TensorBoard is used when it is installed. W&B follows its own environment (WANDB_MODE=offline
needs no network; WANDB_PROJECT names the project, default shardzoo)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Optional

from ..errors import ConfigError

PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb"}


def chosen(report_to: Optional[list[str]]) -> list[str]:
    """The trackers a run uses; raises when an asked-for one is not installed."""
    if report_to is None:
        return ["tensorboard"] if importlib.util.find_spec("tensorboard") else []
    for name in report_to:
        if name != "none" and importlib.util.find_spec(PACKAGES[name]) is None:
            raise ConfigError(f"training.report_to: {name} is not installed; pip install {PACKAGES[name]}, or remove "
                              f"it from training.report_to")
    return [name for name in report_to if name != "none"]


class Trackers:
    def __init__(self, names: list[str], output_dir: Path, run_config: dict):
        self._tb = self._wandb = None
        if "tensorboard" in names:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(output_dir / "tensorboard"))
        if "wandb" in names:
            import wandb

            self._wandb = wandb.init(project=os.environ.get("WANDB_PROJECT", "shardzoo"), name=output_dir.name,
                                     dir=str(output_dir), config=run_config, resume="allow")

    def log(self, record: dict) -> None:
        scalars = {k: v for k, v in record.items() if isinstance(v, (int, float)) and k != "step"}
        if self._tb is not None:
            for key, value in scalars.items():
                self._tb.add_scalar(key, value, record["step"])
        if self._wandb is not None and scalars:
            self._wandb.log(scalars, step=record["step"])

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()
