"""Meta-device models made real: per-parameter deterministic init or weights, shard by shard.

Every rank computes a parameter's full value (from the seed and the parameter's name, or from
the checkpoint), keeps only its own shard, and drops the rest before the next parameter, so no
rank ever holds the whole model and the result is identical for any world size. From a checkpoint
read lazily, a rank reads only the rows of its own shard.
"""

from __future__ import annotations

import zlib
from typing import Callable, Iterable, Optional

import torch
import torch.nn as nn
from torch.distributed.tensor import DTensor, Replicate, Shard, distribute_tensor

from ..errors import CheckpointError

InitFn = Callable[[str, torch.Size, torch.Generator], torch.Tensor]


def local_region(param: torch.Tensor) -> Optional[list[tuple[int, int]]]:
    """(start, stop) per dim of the part of the full parameter this rank holds, for a DTensor split
    by plain Shard placements (torch.chunk sizes, nested in mesh order) or replicated; None when its
    placements chunk otherwise (FSDP2's strided shards over TP) or it is not a DTensor."""
    if not isinstance(param, DTensor):
        return None
    coordinate = param.device_mesh.get_coordinate()
    if coordinate is None:
        return None
    region = [(0, n) for n in param.shape]
    for mesh_dim, placement in enumerate(param.placements):
        if isinstance(placement, Replicate):
            continue
        if type(placement) is not Shard:
            return None
        start, stop = region[placement.dim]
        size = -(-(stop - start) // param.device_mesh.size(mesh_dim))
        lo = min(start + coordinate[mesh_dim] * size, stop)
        region[placement.dim] = (lo, min(lo + size, stop))
    return region


@torch.no_grad()
def copy_full_into(param: torch.Tensor, full, name: str = "") -> None:
    """Write a full (unsharded) value into a possibly sharded parameter. `full` may be a tensor or a
    lazy one (checkpoint/lazy_tensors.py: `shape`, `dtype`, `read(region)`), of which only the
    region this rank keeps is read."""
    if tuple(full.shape) != tuple(param.shape):
        raise CheckpointError(f"{name}: checkpoint tensor has shape {tuple(full.shape)}, model expects "
                              f"{tuple(param.shape)}")
    if not isinstance(full, torch.Tensor):
        region = local_region(param)
        if region is not None:
            local = full.read(region)
            assert local.shape == param.to_local().shape, (name, local.shape, param.to_local().shape, region)
            param.to_local().copy_(local.to(param.device, param.dtype))
            return
        full = full.read()
    if isinstance(param, DTensor):
        local = distribute_tensor(full.to(param.device, param.dtype), param.device_mesh, param.placements,
                                  src_data_rank=None).to_local()
        param.to_local().copy_(local)
    else:
        param.copy_(full.to(param.device, param.dtype))


def default_init(std: float) -> InitFn:
    """Normal(0, std) for matrices, ones for norm weights, zeros for biases and other vectors."""
    def init(name: str, shape: torch.Size, gen: torch.Generator) -> torch.Tensor:
        if len(shape) >= 2:
            return torch.randn(shape, generator=gen) * std
        leaf = name.rsplit(".", 2)
        if name.endswith("weight") and len(leaf) >= 2 and "norm" in leaf[-2]:
            return torch.ones(shape)
        return torch.zeros(shape)
    return init


def init_parameters(model: nn.Module, seed: int, init_fn: InitFn) -> None:
    for name, param in model.named_parameters():
        gen = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
        copy_full_into(param, init_fn(name, param.shape, gen), name)


def load_parameters(model: nn.Module, tensors: Iterable[tuple[str, torch.Tensor]], source: str) -> None:
    """Fill every parameter from (name, full tensor) pairs; missing or unexpected names are errors."""
    params = dict(model.named_parameters())
    seen, unexpected = set(), []
    for name, full in tensors:
        if name not in params:
            unexpected.append(name)
            continue
        copy_full_into(params[name], full, name)
        seen.add(name)
    missing = sorted(set(params) - seen)
    if missing or unexpected:
        raise KeyError(f"weights in {source} do not match the model: missing {missing[:20]}"
                       f"{' ...' if len(missing) > 20 else ''} ({len(missing)}); unexpected {unexpected[:20]}"
                       f"{' ...' if len(unexpected) > 20 else ''} ({len(unexpected)})")


def move_unsharded(module: nn.Module, device: torch.device) -> list[str]:
    """Move what FSDP does not manage (plain parameters: ignored modules, fp32-kept tables; every buffer)
    to `device`; returns their names. With parallel.offload_to_cpu the model is materialized on the host,
    where FSDP keeps its sharded parameters and moves each unit to the device for compute itself; the
    rest computes on the device as it is, so it must live there."""
    moved = []
    for prefix, owner in module.named_modules():
        for name, param in owner.named_parameters(recurse=False):
            if not isinstance(param, DTensor) and param.device != device:
                # Swapped in place: the same Parameter object (a tied weight stays tied, references hold).
                with torch.no_grad():
                    torch.utils.swap_tensors(param, nn.Parameter(param.to(device), requires_grad=param.requires_grad))
                moved.append(f"{prefix}.{name}" if prefix else name)
        for name, buffer in owner.named_buffers(recurse=False):
            if buffer is not None and buffer.device != device:
                owner._buffers[name] = buffer.to(device)
                moved.append(f"{prefix}.{name}" if prefix else name)
    return moved
