"""SwiGLU gate: silu(gate) * up (the dense Qwen3 / Llama MLP activation)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .dispatch import Op


def swiglu_reference(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    return F.silu(gate) * up


swiglu = Op("swiglu", swiglu_reference)
