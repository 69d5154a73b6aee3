"""Learning-rate schedules: linear warmup from 0, then cosine / linear decay to min_lr, or constant."""

from __future__ import annotations

import math

import torch

from ..errors import ConfigError


def warmup_steps(total_steps: int, warmup_ratio: float) -> int:
    return math.ceil(total_steps * warmup_ratio)


def lr_at(step: int, *, lr: float, min_lr: float, warmup: int, total_steps: int, kind: str) -> float:
    """Learning rate of optimizer step `step` (0-based)."""
    if step < warmup:
        return lr * (step + 1) / warmup
    if kind == "constant":
        return lr
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    if kind == "cosine":
        return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if kind == "linear":
        return lr - (lr - min_lr) * progress
    raise ConfigError(f"training.lr_scheduler_type: unknown schedule {kind!r}")


def build_scheduler(optimizer: torch.optim.Optimizer, *, lr: float, min_lr: float, warmup_ratio: float,
                    total_steps: int, kind: str) -> torch.optim.lr_scheduler.LambdaLR:
    warm = warmup_steps(total_steps, warmup_ratio)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_at(s, lr=lr, min_lr=min_lr, warmup=warm, total_steps=total_steps, kind=kind) / lr)

