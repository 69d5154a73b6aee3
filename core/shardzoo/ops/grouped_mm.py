"""Grouped GEMM for MoE experts: rows of x, grouped by expert, times that expert's weight.

    y[rows of group g] = x[rows of group g] @ w[g]        x [N, K], w [G, K, M], counts [G] -> y [N, M]

Rows are contiguous per group in group order (what the permute step produces); `counts` may
contain zeros (an expert that got no token), and its weight then receives a zero gradient.
"""

from __future__ import annotations

from typing import Optional

import torch

from ..device import CPU, CUDA, NPU, torch_npu_missing
from .dispatch import Op


def grouped_mm_reference(x: torch.Tensor, w: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """One matmul per group (the truth; also the fallback users choose for unaligned shapes)."""
    if int(counts.sum()) != x.shape[0]:
        raise ValueError(f"grouped_mm: counts sum to {int(counts.sum())} but x has {x.shape[0]} rows")
    chunks = torch.split(x, counts.tolist())
    out = [chunk @ w[g] for g, chunk in enumerate(chunks)]
    return torch.cat(out) if out else x.new_zeros(0, w.shape[-1])


grouped_mm = Op("grouped_mm", grouped_mm_reference)


@grouped_mm.set_example
def _example(tokens: int, dtype: torch.dtype):
    # 8 experts of 1024 -> 2048, top-2 routing with uneven loads.
    x = torch.randn(2 * tokens, 1024, dtype=dtype, requires_grad=True)
    w = (0.02 * torch.randn(8, 1024, 2048, dtype=dtype)).requires_grad_()
    share = torch.softmax(torch.linspace(-1, 1, 8), 0)
    counts = (share * 2 * tokens).floor().long()
    counts[0] += 2 * tokens - counts.sum()
    return (x, w, counts), {}


class _ContiguousGrad(torch.autograd.Function):
    """Identity whose backward hands on a contiguous gradient: torch._grouped_mm's backward rejects
    the stride-0 gradients that a plain `.sum()` produces."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad.contiguous()


def _alignment_error(x: torch.Tensor, w: torch.Tensor) -> Optional[str]:
    # torch._grouped_mm needs every row stride to be a multiple of 16 bytes.
    align = 16 // x.element_size()
    k, m = w.shape[-2], w.shape[-1]
    if k % align or m % align:
        return (f"torch._grouped_mm needs the feature sizes to be multiples of {align} for {x.dtype} "
                f"(got K={k}, M={m}); choose ops.grouped_mm: reference, or pad the hidden/intermediate sizes")
    return None


def _torch_grouped_mm_missing() -> Optional[str]:
    return None if hasattr(torch, "_grouped_mm") else f"torch {torch.__version__} has no torch._grouped_mm"


@grouped_mm.register("torch_grouped_mm", devices=(CPU, CUDA), priority=10, unavailable=_torch_grouped_mm_missing)
def grouped_mm_torch(x: torch.Tensor, w: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """torch._grouped_mm: one kernel for every group (CUTLASS on Hopper, a native loop on CPU)."""
    problem = _alignment_error(x, w)
    if problem is not None:
        raise ValueError(problem)
    offsets = torch.cumsum(counts, 0).to(torch.int32)
    # A weight stored [G, M, K] and handed in as a transposed view is fine: only strides matter.
    return _ContiguousGrad.apply(torch._grouped_mm(x, w, offs=offsets))


class _NpuGroupedMatmul(torch.autograd.Function):
    """npu_grouped_matmul has no registered autograd (docs/npu_ops.md §5.1): dX is the same op
    with the transposed weight, dW a K-axis grouped matmul (group_type 2) of x^T and the gradient."""

    @staticmethod
    def forward(ctx, x, w, counts):
        import torch_npu

        ctx.save_for_backward(x, w, counts)
        return torch_npu.npu_grouped_matmul([x], [w], group_list=counts, split_item=2, group_type=0,
                                            group_list_type=1)[0]

    @staticmethod
    def backward(ctx, grad):
        import torch_npu

        x, w, counts = ctx.saved_tensors
        grad = grad.contiguous()
        dx = torch_npu.npu_grouped_matmul([grad], [w.transpose(1, 2).contiguous()], group_list=counts,
                                          split_item=2, group_type=0, group_list_type=1)[0]
        dw = torch_npu.npu_grouped_matmul([x.t().contiguous()], [grad], group_list=counts, split_item=3,
                                          group_type=2, group_list_type=1)[0]
        return dx, dw.view_as(w), None


@grouped_mm.register("npu_grouped_matmul", devices=(NPU,), priority=10, unavailable=torch_npu_missing)
def grouped_mm_npu(x: torch.Tensor, w: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    return _NpuGroupedMatmul.apply(x, w.contiguous(), counts.to(torch.int64))
