"""SwiGLU gate: silu(gate) * up (the dense Qwen3 / Llama MLP activation)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .dispatch import Op


def swiglu_reference(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    return F.silu(gate) * up


swiglu = Op("swiglu", swiglu_reference)


@swiglu.set_example
def _example(tokens: int, dtype: torch.dtype):
    # Qwen3-1.7B's MLP width.
    gate, up = (torch.randn(1, tokens, 6144, dtype=dtype, requires_grad=True) for _ in range(2))
    return (gate, up), {}
