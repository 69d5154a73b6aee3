"""A pure-torch stand-in for torch_npu, following reference/npu_ops.md §5, so the NPU backends'
call patterns, argument checks and autograd can be tested without an NPU. Each op implements the
documented semantics and rejects what the documented op rejects (dtypes, shapes, broadcast forms,
limits); ops without a registered derivative return outputs without autograd, as the real ones
do. Passing through it is not NPU validation: kernels, numerics and performance need hardware.

Install in a test with `install(monkeypatch)`: it puts the module in sys.modules as torch_npu;
`without=("npu_clipped_swiglu",)` models an older torch_npu that lacks an op.
"""

from __future__ import annotations

import sys
import types
from typing import Optional

import torch

_GMM_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
_FLOATS = (torch.float16, torch.bfloat16, torch.float32)
_HALF = (torch.float16, torch.bfloat16)


def npu_rms_norm(self: torch.Tensor, gamma: torch.Tensor, epsilon: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """(y, rstd): y = x * rstd * gamma, normalised over gamma's dims, scaled in fp32 and rounded once
    to x's dtype; rstd fp32 with gamma's dims kept as 1 (not differentiable)."""
    if not 2 <= self.dim() <= 8:
        raise ValueError(f"npu_rms_norm: x must have 2 to 8 dims, got {self.dim()}")
    same = gamma.dtype == self.dtype and self.dtype in _FLOATS
    if not (same or gamma.dtype == torch.float32 and self.dtype in _HALF):
        raise TypeError(f"npu_rms_norm: unsupported dtypes x {self.dtype}, gamma {gamma.dtype}")
    if gamma.dim() > self.dim() or tuple(self.shape[self.dim() - gamma.dim():]) != tuple(gamma.shape):
        raise ValueError(f"npu_rms_norm: gamma {tuple(gamma.shape)} is not the trailing dims of x {tuple(self.shape)}")
    dims = tuple(range(-gamma.dim(), 0))
    x = self.float()
    rstd = torch.rsqrt(x.pow(2).mean(dims, keepdim=True) + epsilon)
    return (x * rstd * gamma.float()).to(self.dtype), rstd.detach()


def _rotate(x: torch.Tensor, mode: str) -> torch.Tensor:
    if mode == "half":
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat((-x2, x1), dim=-1)
    pairs = x.unflatten(-1, (-1, 2))
    return torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)


def npu_rotary_mul(self: torch.Tensor, r1: torch.Tensor, r2: torch.Tensor, rotary_mode: str = "half",
                   rotate: Optional[torch.Tensor] = None) -> torch.Tensor:
    """x * cos + rotate(x) * sin with full head_dim tables; modelled for the BSND layout (4-D x)."""
    if rotate is not None:
        raise ValueError("fake npu_rotary_mul: the `rotate` argument is not modelled")
    if rotary_mode not in ("half", "interleave"):
        raise ValueError(f"npu_rotary_mul: rotary_mode must be half or interleave, got {rotary_mode!r}")
    if self.dim() != 4:
        raise ValueError("fake npu_rotary_mul: only 4-D BSND input is modelled")
    if self.dtype not in _FLOATS or r1.dtype != self.dtype or r2.dtype != self.dtype:
        raise TypeError(f"npu_rotary_mul: x, r1, r2 must share one of fp16/bf16/fp32, got {self.dtype}, "
                        f"{r1.dtype}, {r2.dtype}")
    b, s, n, d = self.shape
    if d % 2 or d >= 896 or b >= 1000 or n >= 1000:
        raise ValueError(f"npu_rotary_mul: needs an even D < 896 and B, N < 1000, got {tuple(self.shape)}")
    allowed = {(1, s, 1, d)} if rotary_mode == "interleave" else {(1, s, 1, d), (b, s, 1, d), (b, s, n, d)}
    for name, table in (("r1", r1), ("r2", r2)):
        if tuple(table.shape) not in allowed:
            raise ValueError(f"npu_rotary_mul: {name} {tuple(table.shape)} is not a {rotary_mode}-mode broadcast "
                             f"form of BSND {tuple(self.shape)} ({sorted(allowed)})")
        if table.requires_grad and b * n > 1024:
            raise ValueError("npu_rotary_mul: tables that need gradients require B * N <= 1024")
        if bool((table.detach().abs() > 1).any()):
            raise ValueError(f"npu_rotary_mul: {name} values must lie in [-1, 1]")
    return self * r1 + _rotate(self, rotary_mode) * r2


def npu_swiglu(self: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """SiLU of the first half along `dim` times the second half."""
    if not 1 <= self.dim() <= 8 or self.dtype not in _FLOATS:
        raise TypeError(f"npu_swiglu: needs 1 to 8 dims of fp16/bf16/fp32, got {self.dim()} dims of {self.dtype}")
    if self.shape[dim] % 2:
        raise ValueError(f"npu_swiglu: the split dim has odd size {self.shape[dim]}")
    if not self.is_contiguous():
        raise ValueError("npu_swiglu: the input must be contiguous")
    a, b = self.chunk(2, dim=dim)
    return torch.nn.functional.silu(a) * b


def npu_clipped_swiglu(x: torch.Tensor, *, group_index: Optional[torch.Tensor] = None, dim: int = -1,
                       alpha: float = 1.702, limit: float = 7.0, bias: float = 1.0,
                       interleaved: bool = True) -> torch.Tensor:
    """GPT-OSS's activation; no derivative is registered, so the output carries no autograd."""
    if x.dtype not in _FLOATS:
        raise TypeError(f"npu_clipped_swiglu: unsupported dtype {x.dtype}")
    if x.shape[dim] % 2:
        raise ValueError(f"npu_clipped_swiglu: the split dim has odd size {x.shape[dim]}")
    if dim not in (-1, x.dim() - 1):
        raise ValueError("fake npu_clipped_swiglu: only the last dim is modelled")
    with torch.no_grad():
        rows = x if group_index is None else x[: int(group_index.sum())]
        a, b = (rows[..., ::2], rows[..., 1::2]) if interleaved else rows.chunk(2, dim=-1)
        a, b = a.clamp(max=limit), b.clamp(min=-limit, max=limit)
        return a * torch.sigmoid(alpha * a) * (b + bias)


def _counts(group_list: torch.Tensor, group_list_type: int) -> list[int]:
    if not isinstance(group_list, torch.Tensor) or group_list.dtype != torch.int64:
        raise TypeError("npu_grouped_matmul: group_list must be an int64 Tensor")
    if group_list_type == 1:
        return group_list.tolist()
    if group_list_type == 0:
        cumsum = group_list.tolist()
        if any(b < a for a, b in zip(cumsum, cumsum[1:])):
            raise ValueError("npu_grouped_matmul: group_list_type 0 needs a non-decreasing cumsum")
        return [c - p for c, p in zip(cumsum, [0] + cumsum[:-1])]
    raise ValueError(f"npu_grouped_matmul: group_list_type {group_list_type} is not supported here")


def npu_grouped_matmul(x: list[torch.Tensor], weight: list[torch.Tensor], *, bias=None, group_list=None,
                       split_item: int = 0, group_type: Optional[int] = None, group_list_type: int = 0,
                       **unused) -> list[torch.Tensor]:
    if len(x) != 1 or len(weight) != 1:
        raise ValueError("fake npu_grouped_matmul: only the single-tensor MoE pattern is modelled")
    a, w = x[0], weight[0]
    if a.dtype not in _GMM_DTYPES or w.dtype != a.dtype:
        raise TypeError(f"npu_grouped_matmul: unsupported dtypes x {a.dtype}, weight {w.dtype}")
    if a.dim() != 2 or w.dim() != 3 and group_type == 0:
        raise ValueError("npu_grouped_matmul: split_item 2/3 needs a 2-D x and a 3-D [E, K, N] weight")
    if a.shape[-1] >= 65536 or w.shape[-1] >= 65536:
        raise ValueError("npu_grouped_matmul: the last dim of x and weight must be < 65536")
    counts = _counts(group_list, group_list_type)
    if group_type == 0 and split_item in (2, 3):  # M-axis groups: rows of x per expert
        if sum(counts) != a.shape[0] or len(counts) != w.shape[0]:
            raise ValueError("npu_grouped_matmul: group_list does not cover x's rows / weight's groups")
        parts = torch.split(a, counts)
        return [torch.cat([p @ w[g] for g, p in enumerate(parts)])]
    if group_type == 2 and split_item in (2, 3):  # K-axis groups: x [K, M] and weight [M, N] split on M
        if sum(counts) != a.shape[1] or w.shape[0] != a.shape[1]:
            raise ValueError("npu_grouped_matmul: group_list does not cover the K axis")
        a_parts, w_parts = torch.split(a, counts, dim=1), torch.split(w, counts, dim=0)
        return [torch.stack([ap @ wp for ap, wp in zip(a_parts, w_parts)])]
    raise ValueError(f"npu_grouped_matmul: group_type {group_type} with split_item {split_item} is not modelled")


def npu_moe_token_permute(tokens: torch.Tensor, indices: torch.Tensor, num_out_tokens: Optional[int] = None,
                          padded_mode: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    if padded_mode:
        raise ValueError("npu_moe_token_permute: padded_mode=True is not supported")
    if tokens.dim() != 2 or indices.dtype not in (torch.int32, torch.int64):
        raise TypeError("npu_moe_token_permute: tokens must be [T, H] and indices int32/int64")
    top_k = indices.shape[1] if indices.dim() == 2 else 1
    order = torch.argsort(indices.reshape(-1), stable=True)
    sorted_indices = torch.argsort(order).to(torch.int32)
    return tokens.index_select(0, order // top_k), sorted_indices


def npu_moe_token_unpermute(permuted_tokens: torch.Tensor, sorted_indices: torch.Tensor,
                            probs: Optional[torch.Tensor] = None, padded_mode: bool = False,
                            restore_shape=None) -> torch.Tensor:
    if padded_mode:
        raise ValueError("npu_moe_token_unpermute: padded_mode=True is not supported")
    if probs is None:
        return permuted_tokens.index_select(0, sorted_indices.long())
    tokens, top_k = probs.shape
    copies = permuted_tokens.index_select(0, sorted_indices.long()).view(tokens, top_k, -1)
    return (copies * probs.unsqueeze(-1)).sum(1)


OPS = (npu_rms_norm, npu_rotary_mul, npu_swiglu, npu_clipped_swiglu, npu_grouped_matmul, npu_moe_token_permute,
       npu_moe_token_unpermute)


def install(monkeypatch, without: tuple[str, ...] = ()) -> types.ModuleType:
    module = types.ModuleType("torch_npu")
    for fn in OPS:
        if fn.__name__ not in without:
            setattr(module, fn.__name__, fn)
    monkeypatch.setitem(sys.modules, "torch_npu", module)
    return module
