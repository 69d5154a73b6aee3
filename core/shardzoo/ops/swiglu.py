"""SwiGLU gate: silu(gate) * up (the dense Qwen3 / Llama MLP activation)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..device import NPU, torch_npu_missing
from .dispatch import Op


def swiglu_reference(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    return F.silu(gate) * up


swiglu = Op("swiglu", swiglu_reference)


@swiglu.set_example
def _example(tokens: int, dtype: torch.dtype):
    # Qwen3-1.7B's MLP width.
    gate, up = (torch.randn(1, tokens, 6144, dtype=dtype, requires_grad=True) for _ in range(2))
    return (gate, up), {}


@swiglu.register("npu_swiglu", devices=(NPU,), priority=10, unavailable=torch_npu_missing)
def swiglu_npu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    # npu_swiglu applies SiLU to the first half of its input: [gate, up] in that order. The concat is
    # one copy; its backward is a free split.
    import torch_npu

    return torch_npu.npu_swiglu(torch.cat([gate, up], dim=-1), dim=-1)
