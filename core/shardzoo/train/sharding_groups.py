"""Parameters grouped by how they are sharded: foreach kernels and DTensor reductions need one
mesh per list (expert parallelism puts the experts on a mesh of their own)."""

from __future__ import annotations

import torch
from torch.distributed.tensor import DTensor


def sharding_key(param: torch.Tensor):
    return (param.device_mesh, tuple(param.placements)) if isinstance(param, DTensor) else None


def by_sharding(params: list[torch.Tensor]) -> list[list[torch.Tensor]]:
    """Lists of params with the same mesh and placements, in first-seen order."""
    groups: dict = {}
    for p in params:
        groups.setdefault(sharding_key(p), []).append(p)
    return list(groups.values())
