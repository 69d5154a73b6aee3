"""Routed experts as stacked weights and two grouped GEMMs.

    permute tokens by expert -> dispatch (local, or all-to-all under expert parallel)
    -> h = grouped_mm(x, gate_up) (+ bias) -> activation -> grouped_mm(h, down) (+ bias)
    -> combine -> unpermute, summing each token's k outputs weighted by its routing weights

Parameter names and shapes are the transformers ones (`gate_up_proj`, `down_proj` and, where the
model has them, `*_bias`), so checkpoints map one to one. Two layouts exist: [E, in, out] used as
x @ W (GPT-OSS) and [E, out, in] used as F.linear (Qwen3-MoE); the latter is handed to the
grouped GEMM as a transposed view, without a copy.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn as nn
from torch.distributed.tensor import DTensor

from .. import ops
from ..ops.moe_permute import moe_permute_reference, moe_unpermute_reference

Activation = Callable[[torch.Tensor], torch.Tensor]
"""[rows, 2 I] gate/up projections -> [rows, I]."""


class LocalDispatch:
    """No expert parallelism: every expert lives here, tokens stay."""

    fused_permute = True

    def dispatch(self, rows: torch.Tensor, counts: torch.Tensor):
        return rows, counts, None

    def combine(self, rows: torch.Tensor, state) -> torch.Tensor:
        return rows


def _local(param: torch.Tensor) -> torch.Tensor:
    # Under expert parallelism the (FSDP-unsharded) parameter is a DTensor sharded over experts on
    # the ep mesh; this rank computes with its own experts only.
    return param.to_local() if isinstance(param, DTensor) else param


class GroupedExperts(nn.Module):
    def __init__(self, num_experts: int, hidden_size: int, intermediate_size: int, activation: Activation, *,
                 bias: bool, in_out_layout: bool):
        super().__init__()
        self.num_experts = num_experts
        self.activation = activation
        self.in_out_layout = in_out_layout
        h, i2 = hidden_size, 2 * intermediate_size
        gate_up_shape = (num_experts, h, i2) if in_out_layout else (num_experts, i2, h)
        down_shape = (num_experts, intermediate_size, h) if in_out_layout else (num_experts, h, intermediate_size)
        self.gate_up_proj = nn.Parameter(torch.empty(gate_up_shape))
        self.down_proj = nn.Parameter(torch.empty(down_shape))
        self.gate_up_proj_bias = nn.Parameter(torch.empty(num_experts, i2)) if bias else None
        self.down_proj_bias = nn.Parameter(torch.empty(num_experts, h)) if bias else None
        self.dispatcher = LocalDispatch()
        """Replaced by parallel.expert.apply_expert_parallel."""

    def _weights(self) -> tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor]]:
        w1, w2 = _local(self.gate_up_proj), _local(self.down_proj)
        if not self.in_out_layout:
            w1, w2 = w1.transpose(1, 2), w2.transpose(1, 2)
        b1 = _local(self.gate_up_proj_bias) if self.gate_up_proj_bias is not None else None
        b2 = _local(self.down_proj_bias) if self.down_proj_bias is not None else None
        return w1, w2, b1, b2

    def forward(self, x: torch.Tensor, indices: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """x [T, H], indices/weights [T, k] from the router -> [T, H]."""
        permute = ops.moe_permute if self.dispatcher.fused_permute else moe_permute_reference
        rows, sorted_indices = permute(x, indices)
        counts = torch.bincount(indices.reshape(-1), minlength=self.num_experts)
        rows, local_counts, state = self.dispatcher.dispatch(rows, counts)
        w1, w2, b1, b2 = self._weights()
        h = ops.grouped_mm(rows, w1, local_counts)
        if b1 is not None:
            h = h + torch.repeat_interleave(b1, local_counts, dim=0, output_size=h.shape[0])
        h = self.activation(h)
        out = ops.grouped_mm(h, w2, local_counts)
        if b2 is not None:
            out = out + torch.repeat_interleave(b2, local_counts, dim=0, output_size=out.shape[0])
        out = self.dispatcher.combine(out, state)
        unpermute = ops.moe_unpermute if self.dispatcher.fused_permute else moe_unpermute_reference
        return unpermute(out, sorted_indices, weights)
