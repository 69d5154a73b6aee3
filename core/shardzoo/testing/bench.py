"""Step benchmarks against a reference implementation in the same process (the packages'
benchmarks/bench_step.py): one optimizer step per call, calls alternated, medians compared."""

from __future__ import annotations

import statistics
import time
from typing import Callable

import torch


def optimizer_step(optimizer: torch.optim.Optimizer, loss_fn: Callable[[], torch.Tensor]) -> float:
    """Forward (loss_fn), backward and the optimizer step; returns the loss."""
    loss = loss_fn()
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


def time_alternating(steps: dict[str, Callable[[], float]], repeats: int) -> tuple[dict, dict]:
    """(first-call result per side, median seconds per side). The first call of each side is its
    warm-up (and its loss, which the sides must agree on); then the sides alternate `repeats` times,
    so drifts of the machine hit both alike."""
    first = {name: step() for name, step in steps.items()}
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return first, {name: statistics.median(t) for name, t in times.items()}
