"""Process group and device mesh, through the device layer (gloo / nccl / hccl)."""

from __future__ import annotations

import gc
from dataclasses import dataclass
from datetime import timedelta
from typing import Optional

import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh

from .. import device as devices


def init_distributed(device_type: str, timeout_s: int = 1800, cpu_tensors: bool = False) -> tuple[int, int, int]:
    """Initialise the default process group (also for a single process); returns (rank, local_rank, world).
    `cpu_tensors`: collectives on CPU tensors too (parameters offloaded to the CPU)."""
    rank, local_rank, world = devices.rank_info()
    if not dist.is_initialized():
        backend = devices.dist_backend(device_type, cpu_tensors)
        timeout = timedelta(seconds=timeout_s)
        if world == 1:
            # A lone process still gets a group so FSDP2 and the collectives have one code path;
            # an in-memory store needs no port (nothing to collide with other runs).
            dist.init_process_group(backend=backend, store=dist.HashStore(), rank=0, world_size=1, timeout=timeout)
        else:
            dist.init_process_group(backend=backend, rank=rank, world_size=world, timeout=timeout)
    return rank, local_rank, world


def shutdown_distributed() -> None:
    """Destroy the process group while the interpreter is fully alive.

    FSDP modules sit in reference cycles, so without a collection they (and the gloo work objects
    they hold) are freed only during interpreter teardown, where gloo's threads can abort the
    process (observed: SIGABRT "terminate called without an active exception" in ~1 of 15 2-rank
    runs). Collect first; the barrier keeps a fast rank from closing connections a slow one still uses.
    """
    gc.collect()
    try:
        dist.barrier()
    finally:
        dist.destroy_process_group()


def build_data_parallel_mesh(device_type: str, replicate: int, shard: int) -> DeviceMesh:
    """1-D ("fsdp",) mesh, or 2-D ("dp_replicate", "fsdp") for HSDP when replicate > 1."""
    if replicate == 1:
        return init_device_mesh(device_type, (shard,), mesh_dim_names=("fsdp",))
    return init_device_mesh(device_type, (replicate, shard), mesh_dim_names=("dp_replicate", "fsdp"))


@dataclass
class Meshes:
    dense: DeviceMesh
    """FSDP mesh of every non-expert parameter: ("fsdp",) or ("dp_replicate", "fsdp")."""
    ep: Optional[DeviceMesh] = None
    """Expert-parallel axis (consecutive ranks); None without EP."""
    ep_fsdp: Optional[DeviceMesh] = None
    """Ranks holding the same experts, which FSDP-shard them on dim 1."""
    cp: Optional[DeviceMesh] = None
    """Context-parallel axis (consecutive ranks splitting the same rows); None without CP."""
    tp: Optional[DeviceMesh] = None
    """Tensor-parallel axis (the innermost: consecutive ranks); None without TP."""
    world: Optional[DeviceMesh] = None
    """Every rank, under TP: FSDP's mesh for blocks that run on each rank's own tokens (MoE layers)."""


def build_meshes(device_type: str, replicate: int, shard: int, ep_fsdp: int, ep: int, cp: int = 1,
                 tp: int = 1) -> Meshes:
    """The dense mesh spans every rank, cp ranks included: FSDP shards over data-parallel x cp. Under
    tensor parallel it spans the ranks of one tp index, cut from the same root mesh as the tp axis
    (FSDP2 and DTensor then compose both splits of a parameter)."""
    if tp > 1:
        assert replicate == 1, "mesh_shape refuses TP with HSDP"
        root = init_device_mesh(device_type, (shard // cp, cp, tp), mesh_dim_names=("dp", "cp", "tp"))
        meshes = Meshes(root["dp", "cp"]._flatten("fsdp"), cp=root["cp"] if cp > 1 else None, tp=root["tp"],
                        world=root["dp", "cp", "tp"]._flatten("dp_cp_tp"))
        if ep > 1:
            # The experts see each rank's own tokens (an MoE block under TP is token-local), so the expert
            # mesh spans every rank in its own layout; no parameter lives on both meshes.
            experts = init_device_mesh(device_type, (ep_fsdp, ep), mesh_dim_names=("ep_fsdp", "ep"))
            meshes.ep, meshes.ep_fsdp = experts["ep"], experts["ep_fsdp"]
        return meshes
    if ep == 1:
        meshes = Meshes(build_data_parallel_mesh(device_type, replicate, shard))
    else:
        assert replicate == 1 and ep_fsdp * ep == shard, "expert_mesh_shape validated the EP mesh"
        world = init_device_mesh(device_type, (ep_fsdp, ep), mesh_dim_names=("ep_fsdp", "ep"))
        # The dense mesh must share the expert mesh's root so FSDP and DTensor see one rank layout.
        meshes = Meshes(world["ep_fsdp", "ep"]._flatten("fsdp"), world["ep"], world["ep_fsdp"])
    if cp > 1:
        # Only its process group is used (the Ulysses all-to-all; no DTensor lives on it), so it
        # may have its own root whatever the EP layout.
        size = replicate * shard
        meshes.cp = init_device_mesh(device_type, (size // cp, cp), mesh_dim_names=("cp_dp", "cp"))["cp"]
    return meshes


def gather_objects(obj: object) -> list:
    """Every rank's `obj`, in rank order, on every rank (small picklable values only)."""
    out: list = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out
