"""Batches for data-parallel training, with a checkpointable position.

Each optimizer step consumes `world * per_device_batch * grad_accum` rows taken in order from a
per-epoch permutation fixed by the seed (or the file order with disable_shuffling); rank r reads
its own slice of every micro-batch, so ranks never overlap and one process with a world-sized
batch sees the same rows. An epoch's incomplete last step is dropped (dataloader_drop_last) or
filled with rows from the epoch's start whose targets are masked, so every row counts once and
every rank runs the same number of steps.

Rows that carry `groups` (a group id per row, e.g. a video size bucket: rows of different groups cannot
share a batch) make each step from one group: every group's rows are permuted and cut into steps (its
incomplete last step filled or dropped as above), then the epoch's steps are shuffled. A step's rows are
the same for any split of it over ranks and micro-batches, so grouping keeps that invariance.

The position (epoch, step) is advanced when a step is handed out; `state_dict()` taken after k
steps and loaded into a fresh loader makes it continue with step k + 1 exactly.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Sequence

import numpy as np
import torch

from ..errors import ConfigError
from ..ops import IGNORE_INDEX, document_ids_from_position_ids
from .context_split import split_sequence
from .rows import Row


class TensorFields:
    """Moves a dataclass batch's tensor fields (any task's batch: the trainer calls `to(device)`)."""

    def _map(self, fn: Callable[[torch.Tensor], torch.Tensor]):
        return dataclasses.replace(self, **{f.name: fn(v) for f in dataclasses.fields(self)
                                            if isinstance(v := getattr(self, f.name), torch.Tensor)})

    def to(self, device: torch.device):
        return self._map(lambda t: t.to(device, non_blocking=True))

    def pin_memory(self):
        return self._map(torch.Tensor.pin_memory)


@dataclass
class Batch(TensorFields):
    input_ids: torch.Tensor
    """[B, T] token ids, right-padded."""
    targets: torch.Tensor
    """[B, T] the id to predict at each position, IGNORE_INDEX elsewhere."""
    num_targets: int
    num_tokens: int
    """Non-padding input tokens of live rows (for throughput)."""
    position_ids: Optional[torch.Tensor] = None
    """[B, T] positions restarting per packed document (padding is a document of its own); None = 0..T-1."""
    token_mask: Optional[torch.Tensor] = None
    """[B, T] True on the tokens of live rows, False on padding and on filler rows (what statistics over
    tokens, e.g. the MoE load-balancing loss, must count)."""
    pixel_values: Optional[torch.Tensor] = None
    """[images' tiles..., C, S, S] of every image of the batch, in the order of the image tokens
    (rows in order, each row's images in order); None without images."""
    document_ids: Optional[torch.Tensor] = None
    """[B, T_row] document index of every token of the whole row (packed rows only; attention keeps
    inside a document). Under context parallel the other fields hold this rank's slice of the
    row, and document_ids stays whole, as attention sees the whole sequence."""
    loss_weights: Optional[torch.Tensor] = None
    """[B, T] per-target loss weights (training.loss_reduction square); None = every target weighs 1."""

    cp_size: int = 1
    """The context-parallel ranks whose slices make up the whole rows (split_sequence sets it)."""

    @property
    def loss_normalizer(self) -> float:
        """This batch's share of the step's loss denominator: its target count, or its weights' sum."""
        return float(self.num_targets) if self.loss_weights is None else float(self.loss_weights.sum())

    @property
    def attention_length(self) -> int:
        """Tokens of the whole row that attention sees (this slice times cp_size), for the FLOPs count."""
        return self.input_ids.shape[1] * self.cp_size

    def inputs(self) -> dict:
        """The keyword arguments of the causal-LM task's forward."""
        return {"input_ids": self.input_ids, "targets": self.targets, "position_ids": self.position_ids,
                "document_ids": self.document_ids, "token_mask": self.token_mask, "pixel_values": self.pixel_values,
                "loss_weights": self.loss_weights}



def collate(rows: Sequence[Row], pad_id: int, masked: Sequence[bool] = (), pad_to_multiple_of: int = 1,
            pixels: Optional[Callable[[str], torch.Tensor]] = None, loss_reduction: str = "token") -> Batch:
    """Right-pad rows into a batch of a length divisible by pad_to_multiple_of; `masked` rows keep their
    tokens (and images: the image tokens are still there) but contribute no target. `pixels` loads
    an image file into the model's tensor. loss_reduction "square" adds per-target weights of
    1/sqrt(targets of the sample), a packed row's documents each their own sample."""
    masked = list(masked) or [False] * len(rows)
    length = -(-max(len(r.input_ids) for r in rows) // pad_to_multiple_of) * pad_to_multiple_of
    input_ids = np.full((len(rows), length), pad_id, dtype=np.int64)
    targets = np.full((len(rows), length), IGNORE_INDEX, dtype=np.int64)
    packed = any(r.position_ids is not None for r in rows)
    positions = np.zeros((len(rows), length), dtype=np.int64) if packed else None
    token_mask = np.zeros((len(rows), length), dtype=bool)
    for i, r in enumerate(rows):
        n = len(r.input_ids)
        input_ids[i, :n] = r.input_ids
        if not masked[i]:
            targets[i, :n] = r.targets
            token_mask[i, :n] = True
        if packed:
            positions[i, :n] = r.position_ids if r.position_ids is not None else np.arange(n)
            positions[i, n:] = np.arange(length - n)
    num_tokens = sum(len(r.input_ids) for r, m in zip(rows, masked) if not m)
    position_ids = None if positions is None else torch.from_numpy(positions)
    files = [path for r in rows for path in r.images]
    if files and pixels is None:
        raise ValueError(f"collate: rows carry {len(files)} images but no image loader was given")
    pixel_values = torch.cat([pixels(path) for path in files]) if files else None
    document_ids = None if position_ids is None else document_ids_from_position_ids(position_ids)
    weights = None if loss_reduction == "token" else sqrt_sample_weights(targets, document_ids)
    return Batch(torch.from_numpy(input_ids), torch.from_numpy(targets), int((targets != IGNORE_INDEX).sum()),
                 num_tokens, position_ids, torch.from_numpy(token_mask), pixel_values, document_ids, weights)


def sqrt_sample_weights(targets: np.ndarray, document_ids: Optional[torch.Tensor]) -> torch.Tensor:
    """[B, T] weight 1/sqrt(n) on each target of a sample with n targets (a row, or a packed document)."""
    trained = targets != IGNORE_INDEX
    docs = np.zeros(targets.shape, dtype=np.int64) if document_ids is None else document_ids.numpy()
    weights = np.zeros(targets.shape, dtype=np.float32)
    for i in range(targets.shape[0]):
        for doc in np.unique(docs[i][trained[i]]):
            where = trained[i] & (docs[i] == doc)
            weights[i, where] = 1.0 / np.sqrt(where.sum())
    return torch.from_numpy(weights)


MakeBatch = Callable[[list, np.ndarray, np.ndarray], object]
"""(rows, masked flags, draw keys) -> one micro-batch. A draw key is unique per (epoch, row) and the same
whatever the ranks and batch sizes, so randomness seeded by it (e.g. diffusion noise) splits exactly."""


class _Steps:
    """Shared step arithmetic of both loaders. rank/world count data-parallel ranks (ranks reading
    different rows); the cp_size ranks of a context-parallel group read the same rows and each
    keeps its cp_rank-th slice of the sequence. `make_batch` replaces the token collate for tasks
    whose rows are not token sequences (its batches must then handle context parallel themselves)."""

    def __init__(self, rank: int, world: int, batch_size: int, grad_accum: int, pad_id: int,
                 cp_rank: int = 0, cp_size: int = 1, pixels: Optional[Callable[[str], torch.Tensor]] = None,
                 loss_reduction: str = "token", make_batch: Optional[MakeBatch] = None):
        self.rank, self.world, self.pad_id = rank, world, pad_id
        self.cp_rank, self.cp_size, self.pixels = cp_rank, cp_size, pixels
        self.loss_reduction = loss_reduction
        self.make_batch = make_batch or self._token_batch
        self.batch_size, self.grad_accum = batch_size, grad_accum
        self.step_size = world * batch_size * grad_accum
        self.epoch_index = 0
        self.step_index = 0

    def _token_batch(self, rows: list[Row], masked: np.ndarray, keys: np.ndarray) -> Batch:
        batch = collate(rows, self.pad_id, masked, pad_to_multiple_of=self.cp_size, pixels=self.pixels,
                        loss_reduction=self.loss_reduction)
        return split_sequence(batch, self.cp_rank, self.cp_size) if self.cp_size > 1 else batch

    def local_batches(self, get: Callable[[int], Row], ids: np.ndarray, live: np.ndarray,
                      keys: np.ndarray) -> list:
        """This rank's micro-batches of one step whose global rows are ids[k] (k < step_size)."""
        micro = self.world * self.batch_size
        batches = []
        for a in range(self.grad_accum):
            start = a * micro + self.rank * self.batch_size
            sl = slice(start, start + self.batch_size)
            batches.append(self.make_batch([get(int(i)) for i in ids[sl]], ~live[sl], keys[sl]))
        return batches

    def _advance(self, steps_per_epoch: Optional[int]) -> None:
        self.step_index += 1
        if steps_per_epoch is not None and self.step_index == steps_per_epoch:
            self.epoch_index, self.step_index = self.epoch_index + 1, 0


def _identity(x):
    return x


class StepLoader(_Steps):
    """Iterates optimizer steps over map-style rows; each step is this rank's grad_accum micro-batches."""

    def __init__(self, rows, *, rank: int, world: int, batch_size: int, grad_accum: int, seed: int, shuffle: bool,
                 pad_id: int, drop_last: bool = False, num_workers: int = 0, pin_memory: bool = False,
                 cp_rank: int = 0, cp_size: int = 1, pixels: Optional[Callable[[str], torch.Tensor]] = None,
                 loss_reduction: str = "token", make_batch: Optional[MakeBatch] = None):
        super().__init__(rank, world, batch_size, grad_accum, pad_id, cp_rank, cp_size, pixels, loss_reduction,
                         make_batch)
        self.rows, self.seed, self.shuffle, self.drop_last = rows, seed, shuffle, drop_last
        self.num_workers, self.pin_memory = num_workers, pin_memory
        groups = getattr(rows, "groups", None)
        self.groups = None if groups is None else np.asarray(groups)
        n = len(rows)
        sizes = [n] if self.groups is None else self.group_sizes()
        self.steps_per_epoch = sum(m // self.step_size if drop_last else math.ceil(m / self.step_size) for m in sizes)
        if n == 0 or self.steps_per_epoch == 0:
            per_group = "" if self.groups is None else f" (in groups of {sizes}: each step comes from one group)"
            raise ConfigError(f"the dataset has {n} rows{per_group} but one optimizer step needs {self.step_size} "
                             f"(world {world} x per_device_train_batch_size {batch_size} x gradient_accumulation_steps"
                             f" {grad_accum}); lower them, add data, or set data.dataloader_drop_last: false")
        self._cached: tuple[int, np.ndarray, np.ndarray] | None = None

    def group_sizes(self) -> list[int]:
        """Rows per group, in group id order (empty without groups)."""
        return [] if self.groups is None else np.unique(self.groups, return_counts=True)[1].tolist()

    def order(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """Row ids of the epoch, steps_per_epoch * step_size long, and which of them are live (not fill)."""
        if self._cached is not None and self._cached[0] == epoch:
            return self._cached[1], self._cached[2]
        gen = torch.Generator().manual_seed(self.seed + epoch)
        if self.groups is None:
            ids, live = self._steps_of(np.arange(len(self.rows)), gen)
        else:
            steps = [step for group in np.unique(self.groups)
                     for step in zip(*(a.reshape(-1, self.step_size)
                                       for a in self._steps_of(np.flatnonzero(self.groups == group), gen)))]
            if self.shuffle:
                steps = [steps[i] for i in torch.randperm(len(steps), generator=gen).tolist()]
            ids, live = (np.concatenate([step[k] for step in steps]) for k in (0, 1))
        self._cached = (epoch, ids, live)
        return ids, live

    def _steps_of(self, members: np.ndarray, gen: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
        """`members` (row ids) permuted and cut into whole steps: ids and live flags, a multiple of step_size."""
        if self.shuffle:
            members = members[torch.randperm(len(members), generator=gen).numpy()]
        n = len(members)
        total = (n // self.step_size if self.drop_last else math.ceil(n / self.step_size)) * self.step_size
        # Repeats from the start when filling the last step (those rows are masked).
        return np.resize(members, total), np.arange(total) < n

    def step_batches(self, epoch: int, step: int) -> list[Batch]:
        ids, live = self.order(epoch)
        sl = slice(step * self.step_size, (step + 1) * self.step_size)
        return self.local_batches(self.rows.__getitem__, ids[sl], live[sl], epoch * len(self.rows) + ids[sl])

    def _epoch(self, epoch: int, start: int) -> Iterator[list[Batch]]:
        if self.num_workers == 0:
            for step in range(start, self.steps_per_epoch):
                yield self.step_batches(epoch, step)
            return
        loader = torch.utils.data.DataLoader(_EpochSteps(self, epoch), sampler=range(start, self.steps_per_epoch),
                                             batch_size=None, collate_fn=_identity, num_workers=self.num_workers,
                                             pin_memory=self.pin_memory, prefetch_factor=2)
        yield from loader

    def __iter__(self) -> Iterator[list[Batch]]:
        while True:
            for batches in self._epoch(self.epoch_index, self.step_index):
                self._advance(self.steps_per_epoch)
                yield batches

    def state_dict(self) -> dict:
        state = {"epoch": self.epoch_index, "step": self.step_index, "rows": len(self.rows),
                 "step_size": self.step_size, "seed": self.seed, "shuffle": self.shuffle, "drop_last": self.drop_last}
        if self.groups is not None:
            state["groups"] = self.group_sizes()
        return state

    def load_state_dict(self, state: dict) -> None:
        _check_same({"groups": None, **self.state_dict()}, state,
                    ("rows", "step_size", "seed", "shuffle", "drop_last", "groups"))
        self.epoch_index, self.step_index = int(state["epoch"]), int(state["step"])


class _EpochSteps(torch.utils.data.Dataset):
    """One epoch's steps for DataLoader workers (the loader pickles by value; token stores by path)."""

    def __init__(self, loader: StepLoader, epoch: int):
        self.loader, self.epoch = loader, epoch

    def __len__(self) -> int:
        return self.loader.steps_per_epoch

    def __getitem__(self, step: int) -> list[Batch]:
        return self.loader.step_batches(self.epoch, step)


class StreamLoader(_Steps):
    """Steps over a stream of rows (streaming: true). `make_rows(epoch)` returns the epoch's global row
    stream, the same on every rank; each rank keeps its slices. Resuming replays the epoch's stream up
    to the saved step without collating it."""

    def __init__(self, make_rows: Callable[[int], Iterator[Row]], *, rank: int, world: int, batch_size: int,
                 grad_accum: int, pad_id: int, drop_last: bool = False, cp_rank: int = 0, cp_size: int = 1,
                 pixels: Optional[Callable[[str], torch.Tensor]] = None, loss_reduction: str = "token",
                 make_batch: Optional[MakeBatch] = None):
        super().__init__(rank, world, batch_size, grad_accum, pad_id, cp_rank, cp_size, pixels, loss_reduction,
                         make_batch)
        self.make_rows, self.drop_last = make_rows, drop_last

    def _epoch(self, epoch: int, start: int) -> Iterator[list[Batch]]:
        stream = self.make_rows(epoch)
        step = 0
        while True:
            rows = [row for _, row in zip(range(self.step_size), stream)]
            if not rows or (len(rows) < self.step_size and self.drop_last):
                if step == 0:
                    raise ConfigError(f"the streamed dataset has fewer rows ({len(rows)}) than one optimizer step "
                                     f"needs ({self.step_size}); lower the batch or add data")
                return
            if step >= start:
                live = np.arange(self.step_size) < len(rows)
                ids = np.resize(np.arange(len(rows)), self.step_size)
                # A stream has no row ids: its draw keys count the epoch's rows as they come.
                keys = (epoch << 40) + step * self.step_size + np.arange(self.step_size)
                yield self.local_batches(rows.__getitem__, ids, live, keys)
            step += 1
            if len(rows) < self.step_size:
                return

    def __iter__(self) -> Iterator[list[Batch]]:
        while True:
            for batches in self._epoch(self.epoch_index, self.step_index):
                self.step_index += 1
                yield batches
            self.epoch_index, self.step_index = self.epoch_index + 1, 0

    def state_dict(self) -> dict:
        return {"epoch": self.epoch_index, "step": self.step_index, "step_size": self.step_size, "streaming": True}

    def load_state_dict(self, state: dict) -> None:
        _check_same(self.state_dict(), state, ("step_size", "streaming"))
        self.epoch_index, self.step_index = int(state["epoch"]), int(state["step"])


def _check_same(current: dict, saved: dict, keys: Sequence[str]) -> None:
    diff = [f"{k}: saved {saved.get(k)!r}, now {current[k]!r}" for k in keys if saved.get(k) != current[k]]
    if diff:
        raise ConfigError("the data loader state does not match this run's data (" + "; ".join(diff) + "); resume with "
                         "the same dataset, seed, batch sizes and data-parallel size (world size / cp_size)")
