"""Evaluation during training: the task's loss over every evaluation row, exact over ranks, micro-batches,
context and tensor parallel (normalised as training normalises a step: by the evaluation set's target
count, or weight sum, over all ranks). It runs without gradients and touches nothing training uses: not
the training loader, not the global RNG (a task's randomness is drawn from per-sample generators, so
Wan's flow-matching loss sees the same sigma and noise for a row at every evaluation), not the MoE
routing statistics."""

from __future__ import annotations

import time

import torch
import torch.distributed as dist


def _sum_over_ranks(value: torch.Tensor) -> torch.Tensor:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


@torch.no_grad()
def evaluate(task: torch.nn.Module, loader, device: torch.device, tp: int = 1) -> dict:
    """{eval_loss, eval_s} over all of `loader`'s steps (a collective: every rank calls it at the same step)."""
    start = time.perf_counter()
    batches = [b for step in range(loader.steps_per_epoch) for b in loader.step_batches(0, step)]
    # The tp ranks of a group hold the same rows: their targets are counted once.
    normalizer = _sum_over_ranks(torch.tensor(float(sum(b.loss_normalizer for b in batches)), device=device)) / tp
    total = torch.zeros((), device=device)
    was_training = task.training
    task.eval()
    try:
        for batch in batches:
            batch = batch.to(device)
            total += task.logged_loss(task(**batch.inputs(), normalizer=normalizer, micro_batches=1))
    finally:
        task.train(was_training)
    return {"eval_loss": float(_sum_over_ranks(total)), "eval_s": time.perf_counter() - start}
