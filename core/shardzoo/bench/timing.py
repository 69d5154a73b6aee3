"""Timing that is fair to both sides of a comparison: one optimizer step per call, calls alternated,
medians compared."""

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


def time_alternating(steps: dict[str, Callable[[], float]], repeats: int,
                     sync: Callable[[], None] = lambda: None, warmup: int = 1) -> tuple[dict, dict]:
    """(first-call result per side, median seconds per side). The first `warmup` calls of each side
    are untimed (the first gives its loss, which the sides must agree on; on CPU the allocator
    still faults pages in on the second); then the sides alternate `repeats` times, so drifts of
    the machine hit both alike. `sync` waits for queued device work (an accelerator's synchronize),
    so that no side's tail is charged to the other."""
    first = {name: step() for name, step in steps.items()}
    for _ in range(warmup - 1):
        for step in steps.values():
            step()
    sync()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            sync()
            times[name].append(time.perf_counter() - start)
    return first, {name: statistics.median(t) for name, t in times.items()}
