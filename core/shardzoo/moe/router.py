"""Top-k routers. The two released orders differ and must not be mixed up (model_facts §3, §4)."""

from __future__ import annotations

import torch


def topk_then_softmax(logits: torch.Tensor, top_k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """GPT-OSS: top-k of the raw logits, then a softmax over the k selected values.
    Returns (weights [T, k] in the logits' dtype, expert indices [T, k])."""
    values, indices = torch.topk(logits, top_k, dim=-1)
    return torch.softmax(values, dim=-1, dtype=values.dtype), indices


def softmax_then_topk(logits: torch.Tensor, top_k: int, normalize: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Qwen3-MoE: softmax over all experts in fp32, top-k, optional renormalisation of the k weights."""
    probs = torch.softmax(logits, dim=-1, dtype=torch.float32)
    values, indices = torch.topk(probs, top_k, dim=-1)
    if normalize:
        values = values / values.sum(dim=-1, keepdim=True)
    return values.to(logits.dtype), indices
