"""Rotary position embedding.

Two pairings of the head dimension exist: `half` (NeoX / Qwen3: element i pairs with i + d/2)
and `interleave` (Wan, GPT-J: element 2i pairs with 2i + 1). `rope_cos_sin` builds the tables
for either, full head_dim wide, in fp32 and then cast to the activation dtype (HF numerics).
"""

from __future__ import annotations

from typing import Literal

import torch

from .dispatch import Op

RotaryMode = Literal["half", "interleave"]


def rope_inv_freq(head_dim: int, theta: float, device: torch.device | None = None) -> torch.Tensor:
    return 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim))


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
