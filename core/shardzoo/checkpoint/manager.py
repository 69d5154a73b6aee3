"""Save and resume a training run: atomic, verified, and the same on every rank.

A checkpoint directory holds

    state/                  model + optimizer shards (DCP, safetensors; dcp_state.py)
    rng/rank-<r>.json       each rank's generators (rng.py)
    trainer_state.json      step, lr schedule, data-loader position, optimizer settings, world size
    config.yaml             the run's config
    hf/                     config.json, generation_config.json, tokenizer (for export)
    manifest.json           every file's size and CRC32; written last

Save: all ranks write into .tmp-checkpoint-<step>, the manifest is written, the directory is
renamed into place, then `latest` is rewritten and old checkpoints are pruned. A process killed
at any point leaves either the previous state or the new complete checkpoint. With
training.save_async the tensors are copied to host memory and written by a background thread
while training continues; the publish steps above run once every rank's writes are done.
Resume: the manifest is checked (sizes, CRC32) before any tensor is read; every rank raises the
same error for a damaged checkpoint, so none is left waiting in a collective.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.distributed as dist
import torch.nn as nn
import yaml

from ..config import Config, ConfigError, resolve_path
from ..parallel.mesh import gather_objects
from . import dcp_state, failpoints, layout, rng
from .hf_files import HF_DIR
from .manifest import (
    CheckpointError,
    describe_files,
    describe_share,
    list_files,
    raise_if_any,
    verify,
    write_manifest,
)
from .scheduler_state import load_scheduler_state

log = logging.getLogger(__name__)

STATE_DIR = "state"
TRAINER_STATE = "trainer_state.json"
FORMAT_VERSION = 1


@dataclass
class RunState:
    """The objects of a running job whose state a checkpoint holds and a resume restores."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    loader: Any
    device_type: str
    write_hf_files: Callable[[Path], None]
    """Writes config.json, generation config and tokenizer into a folder (checkpoint/hf_files.py)."""


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)
        f.flush()
        os.fsync(f.fileno())


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing from the checkpoint") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc}); the checkpoint is corrupted") from None


def _timeline_of(checkpoint: Path) -> Optional[str]:
    try:
        return json.loads((checkpoint / TRAINER_STATE).read_text()).get("timeline")
    except (OSError, ValueError, AttributeError):
        return None  # unreadable here: verify() names the problem when it is resumed from


def rng_file(root: Path, rank: int) -> Path:
    return root / "rng" / f"rank-{rank:05d}.json"


@dataclass
class _InFlight:
    step: int
    tmp: Path
    final: Path
    start: float
    future: Optional[Future]
    stall_s: float


class Checkpointer:
    def __init__(self, cfg: Config, rank: int, world: int):
        self.cfg, self.rank, self.world = cfg, rank, world
        self.output_dir = Path(cfg.training.output_dir)
        self.saved_step: Optional[int] = None
        self.in_flight: Optional[_InFlight] = None
        """The save whose tensors are still being written in the background (training.save_async)."""
        self._group: Optional[dist.ProcessGroup] = None
        self._executor: Optional[ThreadPoolExecutor] = None
        self.timeline = uuid.uuid4().hex[:12]
        """Which line of checkpoints this run extends: new for a fresh start or a rollback, inherited
        on `resume: auto`. Stored in every checkpoint, so a save that was published just before a crash
        (before `latest` moved) is still found as the head of its line."""

    # ----------------------------------------------------------------------------------- save

    def save(self, step: int, run_state: RunState, total_steps: int, background: bool = False) -> Path:
        """Collective. Returns the checkpoint directory: published on return, or with `background`
        (training.save_async) once `finish` publishes it after its tensors are written while training
        goes on. An earlier save still in flight is finished first: at most one is."""
        name = layout.checkpoint_name(step)
        final, tmp = self.output_dir / name, self.output_dir / f"{layout.TMP_PREFIX}{name}"
        self.finish()
        if self.saved_step == step:
            return final  # this run saved this step already (a stop right after a periodic save)
        start = time.perf_counter()
        error = None
        if self.rank == 0:
            try:
                self._clear_leftovers()
                tmp.mkdir(parents=True)
            except OSError as exc:
                error = f"cannot create {tmp}: {exc}"
        raise_if_any(gather_objects, error)

        future = None
        if background:
            param_groups, future = dcp_state.save_async(tmp / STATE_DIR, run_state.model, run_state.optimizer,
                                                        self._io_group())
        else:
            param_groups = dcp_state.save(tmp / STATE_DIR, run_state.model, run_state.optimizer)
        # Everything but the tensors is written now: it is this step's state, and small.
        _write_json(rng_file(tmp, self.rank), rng.capture(run_state.device_type))
        if self.rank == 0:
            try:
                _write_json(tmp / TRAINER_STATE, {
                    "format": FORMAT_VERSION, "step": step, "total_steps": total_steps, "world_size": self.world,
                    "timeline": self.timeline,
                    "scheduler": run_state.scheduler.state_dict(), "loader": run_state.loader.state_dict(),
                    "optimizer_param_groups": param_groups, "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S")})
                (tmp / "config.yaml").write_text(yaml.safe_dump(self.cfg.to_dict(), sort_keys=False))
                run_state.write_hf_files(tmp / HF_DIR)
            except Exception as exc:  # noqa: BLE001 - reported to every rank below
                error = f"writing {tmp}: {exc!r}"
        raise_if_any(gather_objects, error)
        if future is not None:
            future = self._describe_when_written(tmp, future)
        self.in_flight = _InFlight(step, tmp, final, start, future, time.perf_counter() - start)
        if future is None:
            self.finish()
        self.saved_step = step
        return final

    def write_done(self) -> bool:
        """Whether this rank has nothing left to write for the save in flight (none counts as done). The
        trainer sums the ranks' answers on its step all-reduce and calls `finish` when every rank is done."""
        return self.in_flight is None or self.in_flight.future is None or self.in_flight.future.done()

    def finish(self) -> None:
        """Collective. Publish the save in flight, waiting for its writes: manifest, rename, `latest`,
        pruning. Nothing is published before every rank's files are complete."""
        pending, self.in_flight = self.in_flight, None
        if pending is None:
            return
        error, share = None, None
        if pending.future is not None:
            try:
                share = pending.future.result()
            except Exception as exc:  # noqa: BLE001 - reported to every rank
                error = f"writing {pending.tmp / STATE_DIR}: {exc!r}"
        raise_if_any(gather_objects, error)
        step, tmp, final = pending.step, pending.tmp, pending.final
        failpoints.hit("save.written", step)

        files = describe_files(tmp, list_files(tmp), self.cfg.training.save_checksums, self.rank, self.world,
                               gather_objects, share)
        pruned: list[Path] = []
        if self.rank == 0:
            try:
                write_manifest(tmp, files, {"format": FORMAT_VERSION, "step": step})
                layout.fsync_dir(tmp)
                if final.exists():  # from a later point of a run this one resumed before (resume: <path>)
                    layout.remove_tree(final)
                os.replace(tmp, final)
                layout.fsync_dir(self.output_dir)
                failpoints.hit("save.published", step)
                layout.write_atomic(self.output_dir / layout.LATEST, final.name)
                pruned = layout.prune(self.output_dir, self.cfg.training.save_total_limit, protect=final)
            except OSError as exc:
                error = f"publishing {final}: {exc!r}"
        raise_if_any(gather_objects, error)
        if self.rank == 0:
            size = sum(f["bytes"] for f in files.values())
            stall = (f"; training waited {pending.stall_s:.1f}s of it (save_async)" if pending.future is not None
                     else "")
            log.info("saved %s (%.1f MiB in %.1fs%s)%s", final, size / 2**20, time.perf_counter() - pending.start,
                     stall, f"; removed {', '.join(p.name for p in pruned)} (save_total_limit)" if pruned else "")

    def _describe_when_written(self, tmp: Path, written: Future) -> Future:
        """A future of this rank's manifest share ({name: {bytes, crc32?}}), made in the background once
        every rank's tensors are written: the checksums of an async save cost the training no time. Called
        after save() wrote the small files on every rank (its last collective), so the listing is whole."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shardzoo-checksums")
        io, checksums = self._io_group(), self.cfg.training.save_checksums

        def describe() -> dict[str, dict]:
            written.result()
            dist.barrier(group=io)  # every rank's tensor files (and the coordinator's metadata) are complete
            return describe_share(tmp, list_files(tmp), checksums, self.rank, self.world)
        return self._executor.submit(describe)

    def _io_group(self) -> dist.ProcessGroup:
        """A CPU process group for background saves only: their coordination must not interleave with
        the training's collectives on the default group (and DCP's async save needs a CPU backend)."""
        if self._group is None:
            self._group = dist.new_group(backend="gloo")
        return self._group

    def _clear_leftovers(self) -> None:
        """Interrupted saves and deletions of earlier runs: nothing in them is ever resumed from."""
        for path in self.output_dir.iterdir() if self.output_dir.is_dir() else ():
            if path.is_dir() and path.name.startswith((layout.TMP_PREFIX + layout.PREFIX, layout.DELETING_PREFIX)):
                log.warning("removing %s, left by an interrupted save or deletion", path)
                shutil.rmtree(path)

    # --------------------------------------------------------------------------------- resume

    def resume_path(self) -> Optional[Path]:
        """The checkpoint this run continues from, per training.resume (no collectives)."""
        setting = self.cfg.training.resume
        done = layout.complete(self.output_dir)
        if setting == "none":
            if done:
                raise ConfigError(f"training.resume: none, but {self.output_dir} already holds checkpoints "
                                  f"({', '.join(p.name for p in done[-3:])}); set training.resume: auto to continue "
                                  "that run, or use a new training.output_dir")
            return None
        if self.rank == 0:
            for path in layout.linked(self.output_dir):
                log.warning("ignoring %s: a symbolic link, not a checkpoint this run wrote (never resumed from or "
                            "pruned); give its target as training.resume to continue from it", path)
        if setting == "auto":
            if self.rank == 0:
                for path in layout.incomplete(self.output_dir):
                    log.warning("ignoring incomplete checkpoint %s (its save was interrupted)", path)
            return self._timeline_head(done)
        path = resolve_path(setting)
        if not (path / layout.MANIFEST).is_file():
            raise CheckpointError(f"training.resume: {path} has no {layout.MANIFEST}, so it is not a complete "
                                  "checkpoint; pick a checkpoint-<step> directory or use auto")
        return path

    def _timeline_head(self, done: list[Path]) -> Optional[Path]:
        """The newest checkpoint of the line `latest` names (a crash between publishing a save and
        moving `latest` leaves the save newer than `latest`, on the same line); checkpoints of another
        line are never picked by their number. Without a valid `latest`, the newest complete one."""
        name = layout.read_latest(self.output_dir)
        head = self.output_dir / name if name else None
        if head is not None and head in done:
            line = _timeline_of(head)
            newer = [p for p in done if layout.step_of(p) > layout.step_of(head) and line is not None
                     and _timeline_of(p) == line]
            return newer[-1] if newer else head
        if name and self.rank == 0:
            log.warning("%s names %s, which is not a complete checkpoint here; continuing from the newest "
                        "complete one", self.output_dir / layout.LATEST, name)
        return done[-1] if done else None

    def start_timeline(self, resumed_from: Path, step: int) -> None:
        """A run that resumed from `step` continues that checkpoint's timeline: newer checkpoints of
        output_dir (an explicit resume from an older one, a rollback) belong to an abandoned one. Rank 0
        renames them aside (kept, warned), so a later `resume: auto` or pruning never meets them.
        Collective."""
        moved: list[str] = []
        error = None
        if self.rank == 0:
            try:
                for path in layout.published(self.output_dir):
                    if layout.step_of(path) > step and path.resolve() != resumed_from.resolve():
                        moved.append(f"{path.name} -> {layout.set_aside(path).name}")
                if moved and resumed_from.parent.resolve() == self.output_dir.resolve():
                    layout.write_atomic(self.output_dir / layout.LATEST, resumed_from.name)
            except OSError as exc:
                error = f"setting aside the newer checkpoints of {self.output_dir}: {exc!r}"
        raise_if_any(gather_objects, error)
        if moved:
            log.warning("resumed from step %d of %s: the newer checkpoints of the abandoned timeline were kept "
                        "under new names and will not be resumed from: %s", step, resumed_from, "; ".join(moved))

    def load(self, path: Path, run_state: RunState, total_steps: int) -> int:
        """Collective. Restores everything and returns the number of steps already done."""
        start = time.perf_counter()
        verify(path, self.rank, self.world, gather_objects)
        error, state, rng_state = None, None, None
        try:
            state = _read_json(path / TRAINER_STATE)
            own = rng_file(path, self.rank)
            rng_state = _read_json(own) if own.is_file() else None
            load_scheduler_state(run_state.scheduler, state["scheduler"])
            run_state.loader.load_state_dict(state["loader"])
        except (CheckpointError, ValueError, KeyError) as exc:
            error = f"{path}: cannot resume: {exc}"
        raise_if_any(gather_objects, error)
        try:
            dcp_state.load(path / STATE_DIR, run_state.model, run_state.optimizer, state["optimizer_param_groups"])
        except Exception as exc:  # DCP raises the same CheckpointException on every rank
            raise CheckpointError(f"{path / STATE_DIR}: cannot load model/optimizer state: {exc}") from exc
        if rng_state is not None:
            rng.restore(rng_state, run_state.device_type)
        elif self.rank == 0:
            log.warning("%s was saved by %d ranks, this run has %d: ranks without a saved generator state keep "
                        "their seed", path, state["world_size"], self.world)
        self.saved_step = state["step"]
        if self.cfg.training.resume == "auto" and state.get("timeline"):
            self.timeline = state["timeline"]  # continuing the line; an explicit resume starts a new one
        if self.rank == 0:
            log.info("resumed from %s at step %d (%.1fs)", path, state["step"], time.perf_counter() - start)
            if state["total_steps"] != total_steps:
                log.warning("the checkpoint was written by a run of %d steps, this run has %d: the lr schedule "
                            "continues on the new length", state["total_steps"], total_steps)
        return int(state["step"])
