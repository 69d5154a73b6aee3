"""Rotary position embedding.

Two pairings of the head dimension exist: `half` (NeoX / Qwen3: element i pairs with i + d/2)
and `interleave` (Wan, GPT-J: element 2i pairs with 2i + 1). `rope_cos_sin` builds the tables
for either, full head_dim wide, in fp32 and then cast to the activation dtype (HF numerics).
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from ..device import CPU, CUDA, NPU, torch_npu_missing
from .dispatch import Op

RotaryMode = Literal["half", "interleave"]


def rope_inv_freq(head_dim: int, theta: float, device: torch.device | None = None) -> torch.Tensor:
    return 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim))


def yarn_inv_freq(head_dim: int, theta: float, factor: float, original_max_position_embeddings: int, *,
                  beta_fast: float = 32.0, beta_slow: float = 1.0, truncate: bool = True,
                  attention_factor: float | None = None,
                  device: torch.device | None = None) -> tuple[torch.Tensor, float]:
    """YaRN (arXiv 2309.00071): per-frequency blend of the original (extrapolated) and the
    factor-interpolated inverse frequencies over a linear ramp between the dimensions that make
    beta_fast and beta_slow rotations in the original context; returns (inv_freq, attention
    factor), the factor (default 0.1 ln(factor) + 1) multiplying both cos and sin. GPT-OSS uses
    truncate=False: the ramp ends are not rounded to whole dimensions."""
    def correction_dim(rotations: float) -> float:
        return head_dim * math.log(original_max_position_embeddings / (rotations * 2 * math.pi)) / (2 * math.log(theta))

    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, head_dim - 1)
    if low == high:
        high += 0.001  # a zero-width ramp would divide by zero
    ramp = torch.clamp((torch.arange(head_dim // 2, dtype=torch.float32, device=device) - low) / (high - low), 0, 1)
    extrapolation_weight = 1 - ramp
    pos_freqs = theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim)
    inv_freq = (1.0 / (factor * pos_freqs)) * (1 - extrapolation_weight) + (1.0 / pos_freqs) * extrapolation_weight
    if attention_factor is None:
        attention_factor = 0.1 * math.log(factor) + 1.0 if factor > 1 else 1.0
    return inv_freq, attention_factor


def rope_cos_sin(position_ids: torch.Tensor, inv_freq: torch.Tensor, dtype: torch.dtype,
                 mode: RotaryMode = "half", scaling: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of shape [B, T, head_dim] for integer positions [B, T]."""
    freqs = position_ids.to(torch.float32)[..., None] * inv_freq.to(position_ids.device)
    if mode == "half":
        emb = torch.cat((freqs, freqs), dim=-1)
    else:
        emb = torch.repeat_interleave(freqs, 2, dim=-1)
    return (emb.cos() * scaling).to(dtype), (emb.sin() * scaling).to(dtype)


def _rotate(x: torch.Tensor, mode: RotaryMode) -> torch.Tensor:
    if mode == "half":
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat((-x2, x1), dim=-1)
    pairs = x.unflatten(-1, (-1, 2))
    return torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)


def rotary_reference(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                           mode: RotaryMode = "half") -> torch.Tensor:
    """x [B, T, heads, head_dim]; cos/sin [B, T, head_dim] (shared by all heads)."""
    cos = cos.unsqueeze(2)
    sin = sin.unsqueeze(2)
    return x * cos + _rotate(x, mode) * sin


rotary = Op("rotary", rotary_reference)


class _Rotary(torch.autograd.Function):
    """The rotation with its own backward. The pair rotation R is antisymmetric (R^T = -R), so
    dx = g cos - R(g sin): the backward needs only the tables, never x, and autograd's copies
    for the rotate's stack / cat backward disappear."""

    @staticmethod
    def forward(ctx, x, cos, sin, mode):
        ctx.mode = mode
        tables_need_grad = ctx.needs_input_grad[1] or ctx.needs_input_grad[2]
        ctx.save_for_backward(cos, sin, x if tables_need_grad else None)
        return x * cos.unsqueeze(2) + _rotate(x, mode) * sin.unsqueeze(2)

    @staticmethod
    def backward(ctx, grad):
        cos, sin, x = ctx.saved_tensors
        grad_x = grad * cos.unsqueeze(2) - _rotate(grad * sin.unsqueeze(2), ctx.mode)
        grad_cos = (grad * x).sum(2).sum_to_size(cos.shape) if ctx.needs_input_grad[1] else None
        grad_sin = (grad * _rotate(x, ctx.mode)).sum(2).sum_to_size(sin.shape) if ctx.needs_input_grad[2] else None
        return grad_x, grad_cos, grad_sin, None


def _as_complex_pairs(t: torch.Tensor) -> torch.Tensor:
    """[..., d] -> complex [..., d/2] over the adjacent pairs (a view when the layout allows one)."""
    if t.stride(-1) != 1 or t.storage_offset() % 2 or any(s % 2 for s in t.stride()[:-1]):
        t = t.clone(memory_format=torch.contiguous_format)
    return torch.view_as_complex(t.unflatten(-1, (-1, 2)))


class _PairRotary(torch.autograd.Function):
    """Interleave mode as one complex multiply: the pair (a, b) times cos + i sin is
    (a cos - b sin, a sin + b cos), the reference's products and sums (bit-equal on the CPU where
    _pair_rotary_applies; a GPU may fuse a product and a sum, one ulp), in one pass over x instead of
    the rotate's negate, stack, two multiplies and an add.
    Its backward multiplies by the conjugate (the inverse rotation). The tables hold each angle
    twice (rope_cos_sin's interleave layout), so their even entries are the angles'."""

    @staticmethod
    def forward(ctx, x, cos, sin):
        dtype = _result_dtype(x, cos, sin)
        turn = torch.complex(cos[..., 0::2].to(dtype), sin[..., 0::2].to(dtype)).unsqueeze(2)
        ctx.save_for_backward(turn)
        ctx.x_dtype = x.dtype
        return torch.view_as_real(_as_complex_pairs(x.to(dtype)) * turn).flatten(-2)

    @staticmethod
    def backward(ctx, grad):
        (turn,) = ctx.saved_tensors
        grad_x = torch.view_as_real(_as_complex_pairs(grad.to(turn.real.dtype)) * turn.conj()).flatten(-2)
        return grad_x.to(ctx.x_dtype), None, None


def _result_dtype(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.dtype:
    return torch.promote_types(torch.promote_types(x.dtype, cos.dtype), sin.dtype)


# On the CPU the complex multiply is exact (separate products and sums) in its vector lanes, but a row's
# remainder past the last full vector is computed with fused multiply-adds: one ulp apart, and by the
# element's place in the row. Rows of a multiple of 16 pairs (every released head: 64 and 128 dims) have
# no remainder under AVX2 or AVX-512; others keep the real-valued form, whose bits do not depend on it.
_CPU_PAIRS_MULTIPLE = 16


def _pair_rotary_applies(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mode: RotaryMode) -> bool:
    # Complex numbers exist in fp32 and fp64 only (none in bf16); tables that learn need x in the
    # backward (_Rotary); compiled graphs fuse the real-valued form themselves.
    return (mode == "interleave" and _result_dtype(x, cos, sin) in (torch.float32, torch.float64)
            and not (cos.requires_grad or sin.requires_grad) and not torch.compiler.is_compiling()
            and (x.device.type != CPU or (x.shape[-1] // 2) % _CPU_PAIRS_MULTIPLE == 0))


@rotary.register("autograd_fn", devices=(CPU, CUDA), priority=10)
def rotary_autograd_fn(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                             mode: RotaryMode = "half") -> torch.Tensor:
    if _pair_rotary_applies(x, cos, sin, mode):
        return _PairRotary.apply(x, cos, sin)
    return _Rotary.apply(x, cos, sin, mode)


@rotary.register("npu_rotary_mul", devices=(NPU,), priority=10, unavailable=torch_npu_missing)
def rotary_npu(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mode: RotaryMode = "half") -> torch.Tensor:
    # npu_rotary_mul takes full-width tables (as ours) in a broadcast form of x's BSND layout: half
    # mode 1S1D / BS1D / BSND, interleave only 1S1D, so per-sample interleave tables go one sample
    # per call (docs/npu_ops.md 5.2).
    import torch_npu

    cos, sin = cos.unsqueeze(2).to(x.dtype), sin.unsqueeze(2).to(x.dtype)
    if mode == "interleave" and cos.shape[0] > 1:
        return torch.cat([torch_npu.npu_rotary_mul(x[i:i + 1], cos[i:i + 1], sin[i:i + 1], rotary_mode=mode)
                          for i in range(x.shape[0])])
    return torch_npu.npu_rotary_mul(x, cos, sin, rotary_mode=mode)


@rotary.set_example
def _example(tokens: int, dtype: torch.dtype):
    # Qwen3-1.7B's queries (16 heads of 128).
    x = torch.randn(1, tokens, 16, 128, dtype=dtype, requires_grad=True)
    cos, sin = rope_cos_sin(torch.arange(tokens)[None], rope_inv_freq(128, 1e6), dtype)
    return (x, cos, sin), {}
