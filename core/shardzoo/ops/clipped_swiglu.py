"""GPT-OSS expert activation: a SwiGLU with clamps and a +1 on the linear half.

    gate = clamp(a, max=limit), up = clamp(b, -limit, limit), y = gate * sigmoid(alpha * gate) * (up + 1)

with (a, b) = columns (0::2, 1::2) of x when `interleaved` (GPT-OSS's gate_up layout), else the
first and second halves. npu_clipped_swiglu computes the same but is inference-only (no
backward, docs/npu_ops.md §5.2), so training keeps this composition of torch ops.
"""

from __future__ import annotations

import torch

from ..device import NPU, torch_npu_op_missing
from .dispatch import Op


def clipped_swiglu_reference(x: torch.Tensor, alpha: float = 1.702, limit: float = 7.0,
                             interleaved: bool = True) -> torch.Tensor:
    if interleaved:
        gate, up = x[..., ::2], x[..., 1::2]
    else:
        gate, up = x.chunk(2, dim=-1)
    gate = gate.clamp(max=limit)
    up = up.clamp(min=-limit, max=limit)
    return (up + 1) * (gate * torch.sigmoid(gate * alpha))


clipped_swiglu = Op("clipped_swiglu", clipped_swiglu_reference)


@clipped_swiglu.set_example
def _example(tokens: int, dtype: torch.dtype):
    # gpt-oss's fused gate_up output (2 x 2880, interleaved) for each of a token's 4 experts.
    x = (3 * torch.randn(4 * tokens, 5760, dtype=dtype)).requires_grad_()
    return (x,), {}


class _NpuClippedSwiglu(torch.autograd.Function):
    """npu_clipped_swiglu has no registered backward (docs/npu_ops.md 5.1): the gradient comes
    from the reference's formula, recomputed from the saved input."""

    @staticmethod
    def forward(ctx, x, alpha, limit, interleaved):
        import torch_npu

        ctx.save_for_backward(x)
        ctx.args = (alpha, limit, interleaved)
        return torch_npu.npu_clipped_swiglu(x, alpha=alpha, limit=limit, bias=1.0, interleaved=interleaved)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        with torch.enable_grad():
            x = x.detach().requires_grad_()
            (grad_x,) = torch.autograd.grad(clipped_swiglu_reference(x, *ctx.args), x, grad)
        return grad_x, None, None, None


# Opt-in (priority 0, the reference wins `auto`): the op is documented for inference, has no
# backward, and SGLang replaced it over precision (docs/npu_ops.md 5.2).
@clipped_swiglu.register("npu_clipped_swiglu", devices=(NPU,),
                         unavailable=torch_npu_op_missing("npu_clipped_swiglu", "7.3.0"))
def clipped_swiglu_npu(x: torch.Tensor, alpha: float = 1.702, limit: float = 7.0,
                       interleaved: bool = True) -> torch.Tensor:
    return _NpuClippedSwiglu.apply(x, alpha, limit, interleaved)
