"""Process group and device mesh, through the device layer (gloo / nccl / hccl)."""

from __future__ import annotations

import os
from datetime import timedelta

import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh

from .. import device as devices


def init_distributed(device_type: str, timeout_s: int = 1800) -> tuple[int, int, int]:
    """Initialise the default process group (also for a single process); returns (rank, local_rank, world)."""
    rank, local_rank, world = devices.rank_info()
    if not dist.is_initialized():
        if world == 1:
            # A lone process still gets a group so FSDP2 and the collectives have one code path.
            os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
            os.environ.setdefault("MASTER_PORT", str(_free_port()))
        backend = devices.dist_backend(device_type)
        dist.init_process_group(backend=backend, rank=rank, world_size=world, timeout=timedelta(seconds=timeout_s))
    return rank, local_rank, world


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_data_parallel_mesh(device_type: str, replicate: int, shard: int) -> DeviceMesh:
    """1-D ("fsdp",) mesh, or 2-D ("dp_replicate", "fsdp") for HSDP when replicate > 1."""
    if replicate == 1:
        return init_device_mesh(device_type, (shard,), mesh_dim_names=("fsdp",))
    return init_device_mesh(device_type, (replicate, shard), mesh_dim_names=("dp_replicate", "fsdp"))
