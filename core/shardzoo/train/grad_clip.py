"""Gradient-norm clipping that works on FSDP2's sharded (DTensor) gradients.

Under expert parallelism the gradients live on two meshes (dense parameters on fsdp, experts on
ep x ep_fsdp); DTensor cannot combine norms across meshes, so each mesh's norm is reduced on its
own and the squares are summed as plain tensors.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch.distributed.tensor import DTensor

from .sharding_groups import by_sharding


@torch.no_grad()
def clip_grad_norm_(params: Iterable[torch.nn.Parameter], max_norm: float) -> torch.Tensor:
    """Global L2 norm of all gradients (over every shard); scales them down if above max_norm > 0."""
    groups = by_sharding([p for p in params if p.grad is not None])
    squares = []
    for group in groups:
        norm = torch.nn.utils.get_total_norm([p.grad for p in group], norm_type=2.0)
        if isinstance(norm, DTensor):
            # The local norms are partial: full_tensor() reduces them across the mesh.
            norm = norm.full_tensor()
        squares.append(norm.float() ** 2)
    total = torch.stack(squares).sum().sqrt() if squares else torch.zeros(())
    if max_norm > 0:
        for group in groups:
            torch.nn.utils.clip_grads_with_norm_(group, max_norm, total)
    return total
