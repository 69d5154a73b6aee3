"""Differentiable collectives shared by the parallelisms (expert all-to-all, Ulysses all-to-all)."""

from __future__ import annotations

import torch
import torch.distributed as dist


class _AllToAll(torch.autograd.Function):
    """all_to_all_single whose backward is the all-to-all with the split sizes swapped."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, out_splits: list[int], in_splits: list[int], group) -> torch.Tensor:
        ctx.splits, ctx.group = (out_splits, in_splits), group
        out = x.new_empty((sum(out_splits), *x.shape[1:]))
        dist.all_to_all_single(out, x.contiguous(), out_splits, in_splits, group=group)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        out_splits, in_splits = ctx.splits
        back = grad.new_empty((sum(in_splits), *grad.shape[1:]))
        dist.all_to_all_single(back, grad.contiguous(), in_splits, out_splits, group=ctx.group)
        return back, None, None, None


def all_to_all(x: torch.Tensor, out_splits: list[int], in_splits: list[int], group) -> torch.Tensor:
    """Rows of `x` (dim 0) in blocks of in_splits[i] go to rank i; blocks of out_splits[i] arrive from rank i."""
    return _AllToAll.apply(x, out_splits, in_splits, group)


class _GatherSequence(torch.autograd.Function):
    """All-gather of each rank's chunk along `dim`; the backward keeps this rank's chunk of the
    gradient (every rank computes the same function of the gathered tensor, so no sum is needed:
    each rank's parameters collect the gradient through its own chunk, and FSDP sums the ranks)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, dim: int, group) -> torch.Tensor:
        ctx.dim, ctx.rank, ctx.size = dim, dist.get_rank(group), dist.get_world_size(group)
        parts = [torch.empty_like(x) for _ in range(ctx.size)]
        dist.all_gather(parts, x.contiguous(), group=group)
        return torch.cat(parts, dim=dim)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad.chunk(ctx.size, dim=ctx.dim)[ctx.rank].contiguous(), None, None


def gather_sequence(x: torch.Tensor, dim: int, group) -> torch.Tensor:
    """Every rank's chunk of `x` along `dim`, in rank order (see _GatherSequence for the backward)."""
    return _GatherSequence.apply(x, dim, group)
