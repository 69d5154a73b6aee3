"""Helpers model packages use in their tests: golden loss curves, distributed launches, parity."""

from .dist import (
    launch_training,
    loss_curve,
    read_metrics,
    run_launch_script,
    run_training,
    training_command,
    training_env,
)
from .golden import GoldenMismatch, GoldenRun, compare_golden, load_golden, write_golden
from .parity import assert_grads_close

__all__ = ["launch_training", "loss_curve", "read_metrics", "run_launch_script", "run_training", "training_command",
           "training_env", "GoldenMismatch", "GoldenRun", "compare_golden", "load_golden", "write_golden",
           "assert_grads_close"]
