"""The one place that knows accelerator names.

Everything else asks this module for the device type, the process-group backend, memory
statistics and peak FLOP/s, so that NPU, CUDA and CPU runs share every other line of code.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import resource
import sys
import time
from typing import Optional

import torch

from .errors import ConfigError

NPU, CUDA, CPU = "npu", "cuda", "cpu"
DEVICE_TYPES = (NPU, CUDA, CPU)

# Process-group backend per device type.
_DIST_BACKEND = {"npu": "hccl", "cuda": "nccl", "cpu": "gloo"}

# Dense bf16 peak FLOP/s per accelerator, matched by substring of the device name (longest
# key first). Figures as published by the vendors and used by MindSpeed / VeOmni for MFU.
PEAK_BF16_FLOPS = {
    "H100": 989e12,  # SXM; the PCIe and NVL parts are slower (torchtitan's table)
    "H100 PCIe": 756e12,
    "H100 NVL": 835e12,
    "H800": 989e12,
    "H200": 989e12,
    "H20": 148e12,
    "A100": 312e12,
    "A800": 312e12,
    "L40": 181.05e12,
    "L20": 119.5e12,
    "B200": 2250e12,
    "910B": 354e12,
    "910_93": 354e12,
}


def _npu_available() -> bool:
    try:
        importlib.import_module("torch_npu")
    except ImportError:
        return False
    return hasattr(torch, "npu") and torch.npu.is_available()


def torch_npu_missing() -> Optional[str]:
    """Why the NPU op backends cannot run in this process (torch_npu not installed), or None."""
    if sys.modules.get("torch_npu") is not None:  # imported already (or a test's stand-in)
        return None
    return None if importlib.util.find_spec("torch_npu") else "torch_npu is not installed"


def torch_npu_op_missing(op: str, since: str = ""):
    """An op backend's `unavailable` check: torch_npu missing, or this torch_npu lacking `op`."""
    def why() -> Optional[str]:
        reason = torch_npu_missing()
        if reason is not None:
            return reason
        import torch_npu

        return None if hasattr(torch_npu, op) else f"this torch_npu has no {op}" + (f" ({since} and later)" if since
                                                                                       else "")
    return why


def detect_device_type() -> str:
    """The best device type on this machine: npu, then cuda, then cpu."""
    if _npu_available():
        return "npu"
    if torch.cuda.is_available():
        return "cuda"
    return "cpu"


def resolve_device_type(requested: str = "auto") -> str:
    """Turn the config's `training.device` into a concrete device type, or explain why not."""
    if requested == "auto":
        return detect_device_type()
    if requested not in DEVICE_TYPES:
        raise ConfigError(
            f"training.device={requested!r} is not a device type; use one of auto, {', '.join(DEVICE_TYPES)}"
        )
    if requested == "npu" and not _npu_available():
        raise ConfigError("training.device=npu but torch_npu is not importable or sees no NPU; "
                           "install the [npu] extra on an Ascend machine or set training.device=auto")
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("training.device=cuda but torch sees no CUDA device; set training.device=auto")
    return requested


def dist_backend(device_type: str, cpu_tensors: bool = False) -> str:
    """The process-group backend for a device type. `cpu_tensors`: the group also reduces CPU tensors
    (FSDP's CPU offload), a composite backend such as "npu:hccl,cpu:gloo"."""
    backend = _DIST_BACKEND[device_type]
    if cpu_tensors and device_type != CPU:
        return f"{device_type}:{backend},{CPU}:{_DIST_BACKEND[CPU]}"
    return backend


def device_module(device_type: str):
    """torch.cuda / torch.npu, or None on CPU."""
    if device_type == "cpu":
        return None
    return getattr(torch, device_type)


def local_device(device_type: str, local_rank: int) -> torch.device:
    if device_type == "cpu":
        return torch.device("cpu")
    device_module(device_type).set_device(local_rank)
    return torch.device(device_type, local_rank)


def synchronize(device_type: str) -> None:
    mod = device_module(device_type)
    if mod is not None:
        mod.synchronize()


def get_rng_state(device_type: str) -> Optional[torch.Tensor]:
    """The current accelerator's generator state (uint8 tensor), or None on CPU."""
    mod = device_module(device_type)
    return None if mod is None else mod.get_rng_state()


def set_rng_state(device_type: str, state: torch.Tensor) -> None:
    device_module(device_type).set_rng_state(state)


def reset_peak_memory(device_type: str) -> None:
    """Start a new peak for peak_memory_bytes: the allocator's on an accelerator; on CPU VmHWM is
    set back to the current RSS (writing 5 to /proc/self/clear_refs, Linux >= 4.0; elsewhere the
    peak stays the process's lifetime peak)."""
    mod = device_module(device_type)
    if mod is not None:
        mod.reset_peak_memory_stats()
        return
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_memory_bytes(device_type: str) -> int:
    """Peak allocated accelerator memory; on CPU the process's high-water resident set size."""
    mod = device_module(device_type)
    if mod is not None:
        return int(mod.max_memory_allocated())
    # VmHWM belongs to this address space; ru_maxrss survives exec on Linux, so a launched
    # worker would report its launcher's peak.
    hwm = process_memory_bytes("VmHWM")
    return hwm if hwm is not None else int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def memory_in_use_bytes(device_type: str) -> int:
    """Memory held now: the allocator's allocated bytes on an accelerator, the resident set on CPU."""
    mod = device_module(device_type)
    if mod is not None:
        return int(mod.memory_allocated())
    return process_memory_bytes("VmRSS") or 0


def process_memory_bytes(field: str) -> Optional[int]:
    """A memory line of /proc/self/status (VmRSS, VmHWM, ...) in bytes; None where there is no procfs."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024  # the kernel reports kB
    except OSError:
        pass
    return None


def device_name(device_type: str) -> str:
    mod = device_module(device_type)
    if mod is not None:
        return str(mod.get_device_name())
    return "cpu"


def compute_capability(device_type: str) -> Optional[tuple[int, int]]:
    """(major, minor) of a CUDA device (Hopper is (9, 0)); None on other device types."""
    if device_type != CUDA:
        return None
    return tuple(torch.cuda.get_device_capability())


@functools.lru_cache(maxsize=None)
def measured_matmul_flops(dtype: torch.dtype = torch.float32, size: int = 1024, seconds: float = 0.3) -> float:
    """Achievable dense matmul FLOP/s of this CPU, measured (there is no vendor peak for CPUs)."""
    a = torch.randn(size, size, dtype=dtype)
    b = torch.randn(size, size, dtype=dtype)
    a @ b  # warm-up
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        n += 1
    return 2 * size**3 * n / (time.perf_counter() - start)


def peak_flops(device_type: str, dtype: torch.dtype = torch.bfloat16) -> tuple[float, str]:
    """(peak FLOP/s per device, where the figure comes from) for MFU.

    Accelerators use the vendor table; an accelerator missing from it gives 0 (MFU reported as
    0, and the source says so). The CPU has no published peak, so its achievable matmul rate is
    measured once per process.
    """
    if device_type == "cpu":
        return measured_matmul_flops(dtype if dtype in (torch.float32, torch.bfloat16) else torch.float32), \
            "measured cpu matmul"
    name = device_name(device_type)
    for key in sorted(PEAK_BF16_FLOPS, key=len, reverse=True):
        if key in name:
            return PEAK_BF16_FLOPS[key], f"table bf16 peak for {key}"
    return 0.0, f"no peak figure known for device {name!r}"


def profiler(device_type: str, *, with_memory: bool, with_stack: bool, record_shapes: bool, level: str):
    """A torch profiler for the device: torch_npu's on NPU (its level chooses how much the NPU side
    records), torch's elsewhere (CUDA kernels traced on a GPU; the level only applies on NPU)."""
    import torch.profiler as tp

    kwargs = dict(record_shapes=record_shapes, profile_memory=with_memory, with_stack=with_stack)
    if device_type == NPU:
        import torch_npu

        levels = {"level0": torch_npu.profiler.ProfilerLevel.Level0, "level1": torch_npu.profiler.ProfilerLevel.Level1,
                  "level2": torch_npu.profiler.ProfilerLevel.Level2}
        config = torch_npu.profiler._ExperimentalConfig(profiler_level=levels[level])
        return torch_npu.profiler.profile(activities=[torch_npu.profiler.ProfilerActivity.CPU,
                                                      torch_npu.profiler.ProfilerActivity.NPU],
                                          experimental_config=config, **kwargs)
    activities = [tp.ProfilerActivity.CPU] + ([tp.ProfilerActivity.CUDA] if device_type == CUDA else [])
    return tp.profile(activities=activities, **kwargs)


def rank_info() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from the launcher's environment; single process if unset."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)),
            int(os.environ.get("WORLD_SIZE", 1)))
