"""A pure-torch stand-in for the torch_npu MoE ops, following reference/npu_ops.md §5, so the NPU
backends' call patterns and autograd can be checked without an NPU. Real NPU validation still
needs hardware. It covers the ops the MoE backends call and rejects what the documented ops
reject for those calls; issue 10 extends it to every NPU op.

Install in a test with `install(monkeypatch)`: it puts the module in sys.modules as torch_npu.
"""

from __future__ import annotations

import sys
import types
from typing import Optional

import torch

_GMM_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


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


def install(monkeypatch) -> types.ModuleType:
    module = types.ModuleType("torch_npu")
    for fn in (npu_grouped_matmul, npu_moe_token_permute, npu_moe_token_unpermute):
        setattr(module, fn.__name__, fn)
    monkeypatch.setitem(sys.modules, "torch_npu", module)
    return module
