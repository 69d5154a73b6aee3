"""RMSNorm: y = w * normalise(x) with the statistics in fp32 (Qwen3 / Llama numerics)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..device import CPU, CUDA, NPU, torch_npu_missing
from .dispatch import Op


def rms_norm_reference(x: torch.Tensor, weight: torch.Tensor, eps: float, weight_in_fp32: bool = False) -> torch.Tensor:
    h = x.float()
    return _scale(x, h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps), weight, weight_in_fp32)


def _scale(x: torch.Tensor, normalised: torch.Tensor, weight: torch.Tensor, weight_in_fp32: bool) -> torch.Tensor:
    # Normalise in fp32. Qwen3/Llama cast back to the input dtype, then scale (the weight multiply
    # happens in the activation dtype); GPT-OSS scales in fp32 and casts last (weight_in_fp32).
    # The two differ by one rounding in bf16.
    if weight_in_fp32:
        return (weight.float() * normalised).to(x.dtype)
    return weight * normalised.to(x.dtype)


def rms_norm_split_width(x: torch.Tensor, weight: torch.Tensor, eps: float, group,
                         weight_in_fp32: bool = False) -> torch.Tensor:
    """rms_norm over a last dim split evenly across `group` (tensor parallel's heads of a norm over all heads,
    Wan's q/k norm): `x` and `weight` hold this rank's columns, the mean of squares is summed over the ranks
    (a differentiable all-reduce: each rank's columns feed every rank's statistic)."""
    from torch.distributed.nn.functional import all_reduce

    h = x.float()
    squares = all_reduce(h.pow(2).sum(-1, keepdim=True), group=group)
    width = x.shape[-1] * torch.distributed.get_world_size(group)
    return _scale(x, h * torch.rsqrt(squares / width + eps), weight, weight_in_fp32)


rms_norm = Op("rms_norm", rms_norm_reference)


@rms_norm.set_example
def _example(tokens: int, dtype: torch.dtype):
    # A Qwen3-1.7B hidden state.
    x = torch.randn(1, tokens, 2048, dtype=dtype, requires_grad=True)
    weight = (1 + 0.1 * torch.randn(2048, dtype=dtype)).requires_grad_()
    return (x, weight, 1e-6), {}


class RMSNorm(nn.Module):
    """`rms_norm` with its weight (named `weight`, as in every HF checkpoint), for models to hold."""

    def __init__(self, dim: int, eps: float, weight_in_fp32: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps, self.weight_in_fp32 = eps, weight_in_fp32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.eps, weight_in_fp32=self.weight_in_fp32)


@rms_norm.register("native", devices=(CPU, CUDA))
def rms_norm_native(x: torch.Tensor, weight: torch.Tensor, eps: float, weight_in_fp32: bool = False) -> torch.Tensor:
    # torch's fused kernel; it applies the weight before rounding to the input dtype, so in bf16
    # it differs from the reference by one rounding (exact in fp32). Opt-in, never auto.
    return F.rms_norm(x, (x.shape[-1],), weight.to(x.dtype), eps)


class _RMSNorm(torch.autograd.Function):
    """The reference's forward (the same ops, so the same bits) with a backward of its own. With
    n = x r, r = 1/rms(x) and gn the gradient reaching n, dx = r (gn - n mean(gn n)): it needs only n
    and r, where autograd's chain keeps x, n (twice in half precision) and walks the square, the mean
    and the rsqrt back in about twice the passes. The weight's gradient and gn are rounded where the
    reference's multiply rounds them."""

    @staticmethod
    def forward(ctx, x, weight, eps, weight_in_fp32):
        h = x.float()
        rstd = torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
        normalised = h * rstd
        ctx.save_for_backward(normalised, rstd, weight)
        ctx.x_dtype, ctx.weight_in_fp32 = x.dtype, weight_in_fp32
        return _scale(x, normalised, weight, weight_in_fp32)

    @staticmethod
    def backward(ctx, grad):
        normalised, rstd, weight = ctx.saved_tensors
        # The multiply by the weight: in fp32 (weight_in_fp32), or with n rounded to x's dtype.
        scaled = normalised if ctx.weight_in_fp32 else normalised.to(ctx.x_dtype)
        if ctx.weight_in_fp32:
            grad = grad.float()
        grad_weight = None
        if ctx.needs_input_grad[1]:
            grad_weight = (grad * scaled).reshape(-1, grad.shape[-1]).sum(0).to(weight.dtype)
        grad_normalised = (grad * weight).to(scaled.dtype).float()
        dot = (grad_normalised * normalised).mean(-1, keepdim=True)
        grad_x = torch.addcmul(grad_normalised, normalised, dot, value=-1).mul_(rstd)
        return grad_x.to(ctx.x_dtype), grad_weight, None, None


@rms_norm.register("autograd_fn", devices=(CPU, CUDA), priority=10)
def rms_norm_autograd_fn(x: torch.Tensor, weight: torch.Tensor, eps: float,
                         weight_in_fp32: bool = False) -> torch.Tensor:
    return _RMSNorm.apply(x, weight, eps, weight_in_fp32)


@rms_norm.register("npu_rms_norm", devices=(NPU,), priority=10, unavailable=torch_npu_missing)
def rms_norm_npu(x: torch.Tensor, weight: torch.Tensor, eps: float, weight_in_fp32: bool = False) -> torch.Tensor:
    # torch_npu.npu_rms_norm returns (y, rstd); y scales by the weight before rounding to x's dtype, so
    # it equals the reference exactly for weight_in_fp32 (GPT-OSS) and in fp32, and by one bf16
    # rounding otherwise (as MindSpeed accepts for Qwen). Allowed (x, weight) dtypes: equal, or a
    # half-precision x with an fp32 weight (docs/npu_ops.md 5.2).
    import torch_npu

    if weight.dtype != x.dtype and not (weight.dtype == torch.float32 and x.dtype in (torch.float16, torch.bfloat16)):
        weight = weight.to(x.dtype)
    return torch_npu.npu_rms_norm(x, weight, eps)[0]
