"""training.profile_*: the torch profiler (torch_npu's on NPU) around a range of optimizer steps on the
chosen ranks; one Chrome trace per rank, `<save>/rank<r>_steps<start>-<end>.json`, each step marked
`shardzoo step <n>`."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import torch

from .. import device as devices

log = logging.getLogger(__name__)


class StepProfiler:
    def __init__(self, t, device_type: str, rank: int, output_dir: Path):
        self.start, self.end = t.profile_step_start, t.profile_step_end
        self.on = self.start >= 1 and (-1 in t.profile_ranks or rank in t.profile_ranks)
        self.t, self.device_type, self.rank = t, device_type, rank
        self.save = Path(t.profile_save_path) if t.profile_save_path else output_dir / "profile"
        self._prof = None

    def step(self, step: int):
        """Context around optimizer step `step` (1-based)."""
        if not self.on or not (self.start <= step <= self.end):
            return contextlib.nullcontext()
        if self._prof is None:
            t = self.t
            self._prof = devices.profiler(self.device_type, with_memory=t.profile_with_memory,
                                          with_stack=t.profile_with_stack, record_shapes=t.profile_record_shapes,
                                          level=t.profile_level)
            self._prof.__enter__()
        return torch.profiler.record_function(f"shardzoo step {step}")

    def after(self, step: int) -> None:
        """After optimizer step `step`: the trace closes after the last profiled step."""
        if self._prof is not None and step >= self.end:
            self.close(step)

    def close(self, last_step: int) -> None:
        """Write the trace (also for a run that stopped inside the range)."""
        if self._prof is None:
            return
        self._prof.__exit__(None, None, None)
        self.save.mkdir(parents=True, exist_ok=True)
        path = self.save / f"rank{self.rank}_steps{self.start}-{min(last_step, self.end)}.json"
        self._prof.export_chrome_trace(str(path))
        self._prof = None
        log.info("profile of steps %d-%d written to %s", self.start, min(last_step, self.end), path)
