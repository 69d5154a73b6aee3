"""Helpers model packages use in their tests: golden loss curves, distributed launches, parity."""

from .dist import read_metrics, run_training
from .golden import GoldenMismatch, compare_golden, load_golden, write_golden
from .parity import assert_grads_close

__all__ = ["read_metrics", "run_training", "GoldenMismatch", "compare_golden", "load_golden", "write_golden",
           "assert_grads_close"]
