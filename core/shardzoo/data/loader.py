"""Batches for data-parallel training.

Each optimizer step consumes `world * per_device_batch * grad_accum` samples taken in order from
a per-epoch permutation fixed by the seed; rank r reads its own slice of every micro-batch, so
ranks never overlap and one process with a world-sized batch sees the same samples. An epoch's
incomplete last step is dropped (every rank must run the same number of steps).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

from ..ops import IGNORE_INDEX
from .templates import TokenizedSample


@dataclass
class Batch:
    input_ids: torch.Tensor
    """[B, T] token ids, right-padded."""
    targets: torch.Tensor
    """[B, T] the id to predict at each position (labels shifted left), IGNORE_INDEX elsewhere."""
    num_targets: int
    num_tokens: int
    """Non-padding input tokens (for throughput)."""

    def to(self, device: torch.device) -> "Batch":
        return Batch(self.input_ids.to(device, non_blocking=True), self.targets.to(device, non_blocking=True),
                     self.num_targets, self.num_tokens)


def collate(samples: list[TokenizedSample], pad_id: int) -> Batch:
    length = max(len(s.input_ids) for s in samples)
    input_ids = torch.full((len(samples), length), pad_id, dtype=torch.long)
    targets = torch.full((len(samples), length), IGNORE_INDEX, dtype=torch.long)
    for i, s in enumerate(samples):
        n = len(s.input_ids)
        input_ids[i, :n] = torch.tensor(s.input_ids)
        targets[i, :n - 1] = torch.tensor(s.labels[1:])
    return Batch(input_ids, targets, int((targets != IGNORE_INDEX).sum()), sum(len(s.input_ids) for s in samples))


class StepBatches:
    """Iterates optimizer steps; each step is a list of grad_accum local micro-batches."""

    def __init__(self, samples: list[TokenizedSample], *, rank: int, world: int, batch_size: int, grad_accum: int,
                 seed: int, shuffle: bool, pad_id: int):
        self.samples, self.rank, self.world = samples, rank, world
        self.batch_size, self.grad_accum = batch_size, grad_accum
        self.seed, self.shuffle, self.pad_id = seed, shuffle, pad_id
        self.step_size = world * batch_size * grad_accum
        if len(samples) < self.step_size:
            raise ValueError(f"the dataset has {len(samples)} samples but one optimizer step needs {self.step_size} "
                             f"(world {world} x per_device_train_batch_size {batch_size} x "
                             f"gradient_accumulation_steps {grad_accum}); lower them or add data")
        self.steps_per_epoch = len(samples) // self.step_size

    def order(self, epoch: int) -> list[int]:
        if not self.shuffle:
            return list(range(len(self.samples)))
        gen = torch.Generator().manual_seed(self.seed + epoch)
        return torch.randperm(len(self.samples), generator=gen).tolist()

    def epoch(self, epoch: int) -> Iterator[list[Batch]]:
        order = self.order(epoch)
        micro = self.world * self.batch_size
        for step in range(self.steps_per_epoch):
            batches = []
            for a in range(self.grad_accum):
                start = (step * self.grad_accum + a) * micro + self.rank * self.batch_size
                batches.append(collate([self.samples[i] for i in order[start:start + self.batch_size]], self.pad_id))
            yield batches

    def __iter__(self) -> Iterator[list[Batch]]:
        epoch = 0
        while True:
            yield from self.epoch(epoch)
            epoch += 1
