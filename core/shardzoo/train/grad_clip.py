"""Gradient-norm clipping that works on FSDP2's sharded (DTensor) gradients."""

from __future__ import annotations

from typing import Iterable

import torch
from torch.distributed.tensor import DTensor


@torch.no_grad()
def clip_grad_norm_(params: Iterable[torch.nn.Parameter], max_norm: float) -> torch.Tensor:
    """Global L2 norm of all gradients (over every shard); scales them down if above max_norm > 0."""
    params = [p for p in params if p.grad is not None]
    grads = [p.grad for p in params]
    total = torch.nn.utils.get_total_norm(grads, norm_type=2.0)
    if isinstance(total, DTensor):
        # The local norms are partial: full_tensor() reduces them across the mesh.
        total = total.full_tensor()
    if max_norm > 0:
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, total)
    return total
