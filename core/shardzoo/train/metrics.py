"""Per-step metrics to the console, a JSONL file (flushed every line) and TensorBoard if installed."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Callable, Optional

import torch
from tqdm import tqdm

from .trackers import Trackers

log = logging.getLogger(__name__)


def repair_torn_line(path: Path) -> bool:
    """Cut a last line that a crash (disk full, kill) left without its newline, so the next record
    starts a line of its own instead of being glued onto a torn one. True if something was cut."""
    if not path.is_file() or path.stat().st_size == 0:
        return False
    with open(path, "rb+") as f:
        end = f.seek(0, os.SEEK_END)
        f.seek(end - 1)
        if f.read(1) == b"\n":
            return False
        keep, block = 0, 1 << 16
        for start in range(max(0, end - block), -block, -block):  # backwards, a block at a time
            start = max(0, start)
            f.seek(start)
            newline = f.read(min(block, end - start)).rfind(b"\n")
            if newline >= 0:
                keep = start + newline + 1
                break
            if start == 0:
                break
        f.truncate(keep)
    data_len = end
    log.warning("%s: removed a torn last line (%d bytes) left by an interrupted write", path, data_len - keep)
    return True


STEP_LINE = (("step", "step {}"), ("loss", "loss {:.4f}"), ("lr", "lr {:.2e}"), ("grad_norm", "grad_norm {:.3f}"),
             ("tokens_per_s", "tokens/s {:,.0f}"), ("mfu", "mfu {:.2%}"), ("peak_memory_gib", "mem {:.2f} GiB"),
             ("aux_loss", "aux {:.4f}"), ("eval_loss", "eval_loss {:.4f}"))
"""What the console shows of a step, in order (a key the record lacks is left out)."""


def step_line(record: dict) -> str:
    return " | ".join(fmt.format(record[key]) for key, fmt in STEP_LINE if key in record)


class MetricsWriter:
    def __init__(self, output_dir: str, enabled: bool, trackers: list[str] = (), run_config: Optional[dict] = None):
        self.enabled = enabled
        self.path = Path(output_dir) / "metrics.jsonl"
        self._file = None
        self._trackers = None
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            repair_torn_line(self.path)
            self._file = open(self.path, "a")
            self._trackers = Trackers(list(trackers), Path(output_dir), run_config or {})

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        self._trackers.log(record)

    def console(self, record: dict) -> None:
        """A step record as one short line people read (the whole record is in metrics.jsonl); any other
        record as its keys and values."""
        if not self.enabled:
            return
        if "loss" in record or "eval_loss" in record:
            tqdm.write(step_line(record))
            return
        parts = [f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in record.items()]
        tqdm.write(" | ".join(parts))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        if self._trackers is not None:
            self._trackers.close()


class Throughput:
    """Tokens/s and MFU over the window since the last report."""

    def __init__(self, world: int, peak_flops_per_device: float):
        self.world = world
        self.peak = peak_flops_per_device
        self.reset()

    def reset(self) -> None:
        self.tokens = 0
        self.flops = 0.0
        self.start = time.perf_counter()

    def add(self, tokens: int, flops: float) -> None:
        self.tokens += tokens
        self.flops += flops

    def report(self, sum_over_ranks: Callable[[torch.Tensor], torch.Tensor]) -> dict:
        """Over all ranks (a collective: every rank calls it at the same step); each rank counted only
        its own tokens, which differ between ranks (padding, packing, context-parallel slices)."""
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        tokens, flops = sum_over_ranks(torch.tensor([float(self.tokens), self.flops])).tolist()
        out = {"elapsed_s": elapsed, "tokens_per_s": tokens / elapsed,
               "tokens_per_s_per_device": tokens / elapsed / self.world,
               "mfu": (flops / elapsed / (self.peak * self.world)) if self.peak else 0.0}
        self.reset()
        return out


def gib(n_bytes: Optional[int]) -> float:
    return (n_bytes or 0) / 2**30
