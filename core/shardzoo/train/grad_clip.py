"""Gradient-norm clipping that works on sharded (DTensor) gradients on any meshes.

Gradients live on several meshes (dense parameters on fsdp, or fsdp x tp under tensor parallel, experts
on ep x ep_fsdp, ignored modules whole on every rank). Each rank adds up the squares of what it holds,
divided by the number of ranks that hold the same values (the product of its mesh's replicated dims,
times the ranks outside its mesh: a parameter FSDP shards over the data ranks only, e.g. a vision tower
left whole under tensor parallel, is a copy on every tp rank), and one all-reduce over the world gives
the squared norm.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor

from .sharding_groups import by_sharding


@torch.no_grad()
def clip_grad_norm_(params: Iterable[torch.nn.Parameter], max_norm: float) -> torch.Tensor:
    """Global L2 norm of all gradients (over every shard); scales them down if above max_norm > 0."""
    params = [p for p in params if p.grad is not None]
    grads = [p.grad for p in params]
    if not grads:
        return torch.zeros(())
    # One fused (foreach) norm per number of copies, not a kernel chain per parameter.
    by_copies: dict[int, list[torch.Tensor]] = {}
    for grad in grads:
        local, copies = _local_and_copies(grad)
        by_copies.setdefault(copies, []).append(local)
    squares = sum(torch.nn.utils.get_total_norm(local, norm_type=2.0).float() ** 2 / copies
                  for copies, local in by_copies.items())
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(squares, op=dist.ReduceOp.SUM)
    total = squares.sqrt()
    if max_norm > 0:
        for group in by_sharding(params):
            torch.nn.utils.clip_grads_with_norm_(group, max_norm, total)
    return total


def _local_and_copies(grad: torch.Tensor) -> tuple[torch.Tensor, int]:
    """What this rank holds of a gradient, and how many ranks hold the same values."""
    if isinstance(grad, DTensor):
        mesh = grad.device_mesh
        outside = (dist.get_world_size() if dist.is_initialized() else 1) // mesh.size()
        return grad.to_local(), outside * math.prod(mesh.size(i) for i, p in enumerate(grad.placements)
                                                    if p.is_replicate())
    # Whole on every rank (a module FSDP ignores), or a single process.
    return grad, dist.get_world_size() if dist.is_initialized() else 1
