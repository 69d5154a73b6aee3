"""Recompute must not change the numbers: the same model and batch, recomputed or not, give the same
loss (aux loss included) and the same gradient for every parameter. Any package checks its model with
`recompute_matches(build, ...)`."""

from __future__ import annotations

import copy
from typing import Callable

import torch
import torch.nn as nn

from ..parallel.recompute import apply_recompute
from ..train.task import CausalLMTask


def loss_and_grads(task: CausalLMTask, input_ids: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One training micro-batch whose last three tokens of each row are padding (masked out of the
    loss and of the routing statistics, as the trainer's batches are)."""
    targets = torch.cat([input_ids[:, 1:], torch.full_like(input_ids[:, :1], -100)], 1)
    targets[:, -3:] = -100
    token_mask = torch.ones_like(input_ids, dtype=torch.bool)
    token_mask[:, -3:] = False
    loss = task(input_ids, targets, normalizer=float((targets != -100).sum()), token_mask=token_mask)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in task.named_parameters() if p.grad is not None}


def recompute_matches(build: Callable[[], nn.Module], patterns: list[str], use_reentrant: bool,
                      input_ids: torch.Tensor, chunk_size: int = 64) -> tuple[tuple, tuple]:
    """((loss, grads) without recompute, (loss, grads) with it) of one copy of the model each."""
    model = build()
    twin = copy.deepcopy(model)
    plain = loss_and_grads(CausalLMTask(model, chunk_size), input_ids)
    apply_recompute(twin, patterns, use_reentrant)
    recomputed = loss_and_grads(CausalLMTask(twin, chunk_size), input_ids)
    return plain, recomputed
