"""Token permutation around the experts.

permute: each token is copied once per selected expert and the copies are ordered by expert
(stable, so ties keep token order): permuted [T*k, H] and sorted_indices [T*k], where
sorted_indices[t*k + j] is the row of permuted holding the j-th copy of token t (the
npu_moe_token_permute contract, docs/npu_ops.md §5.2).
unpermute: the inverse, summing the k copies of each token weighted by probs [T, k].
"""

from __future__ import annotations

import torch

from ..device import NPU, torch_npu_missing
from .dispatch import Op


def moe_permute_reference(tokens: torch.Tensor, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    top_k = indices.shape[1] if indices.dim() == 2 else 1
    order = torch.argsort(indices.reshape(-1), stable=True)
    sorted_indices = torch.argsort(order).to(torch.int32)
    return tokens.index_select(0, order // top_k), sorted_indices


def moe_unpermute_reference(permuted: torch.Tensor, sorted_indices: torch.Tensor,
                            probs: torch.Tensor) -> torch.Tensor:
    tokens, top_k = probs.shape
    copies = permuted.index_select(0, sorted_indices.long()).view(tokens, top_k, -1)
    return (copies * probs.unsqueeze(-1).to(copies.dtype)).sum(1)


moe_permute = Op("moe_permute", moe_permute_reference)
moe_unpermute = Op("moe_unpermute", moe_unpermute_reference)


def _routing(tokens: int, experts: int = 32, top_k: int = 4) -> torch.Tensor:
    return torch.rand(tokens, experts).topk(top_k, dim=-1).indices.to(torch.int32)


@moe_permute.set_example
def _permute_example(tokens: int, dtype: torch.dtype):
    # gpt-oss-20b: hidden 2880, 32 experts, top 4.
    return (torch.randn(tokens, 2880, dtype=dtype, requires_grad=True), _routing(tokens)), {}


@moe_unpermute.set_example
def _unpermute_example(tokens: int, dtype: torch.dtype):
    _, sorted_indices = moe_permute_reference(torch.empty(tokens, 1), _routing(tokens))
    permuted = torch.randn(4 * tokens, 2880, dtype=dtype, requires_grad=True)
    probs = torch.softmax(torch.randn(tokens, 4), -1).to(dtype).requires_grad_()
    return (permuted, sorted_indices, probs), {}


@moe_permute.register("npu_moe_token_permute", devices=(NPU,), priority=10, unavailable=torch_npu_missing)
def moe_permute_npu(tokens: torch.Tensor, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    import torch_npu

    return torch_npu.npu_moe_token_permute(tokens, indices.to(torch.int32))


@moe_unpermute.register("npu_moe_token_unpermute", devices=(NPU,), priority=10, unavailable=torch_npu_missing)
def moe_unpermute_npu(permuted: torch.Tensor, sorted_indices: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    import torch_npu

    return torch_npu.npu_moe_token_unpermute(permuted, sorted_indices, probs.to(permuted.dtype))
