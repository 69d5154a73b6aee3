"""Rotary position embedding.

Two pairings of the head dimension exist: `half` (NeoX / Qwen3: element i pairs with i + d/2)
and `interleave` (Wan, GPT-J: element 2i pairs with 2i + 1). `rope_cos_sin` builds the tables
for either, full head_dim wide, in fp32 and then cast to the activation dtype (HF numerics).
"""

from __future__ import annotations

import math
from typing import Literal

import torch

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


def apply_rotary_reference(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                           mode: RotaryMode = "half") -> torch.Tensor:
    """x [B, T, heads, head_dim]; cos/sin [B, T, head_dim] (shared by all heads)."""
    cos = cos.unsqueeze(2)
    sin = sin.unsqueeze(2)
    return x * cos + _rotate(x, mode) * sin


apply_rotary = Op("rotary", apply_rotary_reference)
