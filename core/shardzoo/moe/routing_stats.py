"""Routing statistics of one forward: expert load for the metrics, and the load-balancing loss.

Each MoE block calls `record_routing(logits, indices, probs)`; while a RoutingCollector is
active (the task's forward) it keeps per layer the token count of every expert and, when the aux
loss is on, the router probabilities softmax(logits). Only real tokens count (the batch's
token_mask: padding and filler rows are left out, as transformers does with an attention mask),
so the loss does not depend on how a batch is split and padded over ranks. Activation recompute
re-runs the blocks during backward, outside the collector, so nothing is counted twice.

The loss is the Switch-Transformer form that transformers uses for Qwen3-MoE and GPT-OSS, with
the statistics pooled over layers (model_facts §3):

    aux = E * sum_e f_e * P_e,  f_e = sum_l count_le / (T L),  P_e = sum_l sum_t softmax_le(t) / (T L)

Across data-parallel ranks f and T are all-reduced (they carry no gradient) and each rank adds
its own share of P, so the ranks' aux terms sum to the aux of the whole batch and the summed
gradients equal one process's.
"""

from __future__ import annotations

import contextvars
from typing import Callable, Optional

import torch

_ACTIVE: contextvars.ContextVar[Optional["RoutingCollector"]] = contextvars.ContextVar("routing", default=None)


def aux_loss_coef(config) -> float:
    """transformers' rule: the load-balancing loss is added only when output_router_logits is on."""
    if not getattr(config, "output_router_logits", False):
        return 0.0
    return float(getattr(config, "router_aux_loss_coef", 0.0) or 0.0)


def router_probs(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over all experts in fp32 [T, E]: the P statistic before pooling."""
    return torch.softmax(logits, dim=-1, dtype=torch.float32)


def record_routing(logits: torch.Tensor, indices: torch.Tensor, probs: Optional[torch.Tensor]) -> None:
    """Called by every MoE block with its router logits [T, E], chosen experts [T, k] and, when the
    aux loss is on, router_probs(logits). Blocks compute probs whether or not a collector is
    listening, so a recomputed forward saves the same tensors as the first one."""
    collector = _ACTIVE.get()
    if collector is not None:
        collector.add(logits.shape[-1], indices, probs)


class RoutingCollector:
    def __init__(self, token_mask: Optional[torch.Tensor] = None) -> None:
        """token_mask [B, T] (or flat): True on the tokens to count; None counts every token."""
        self.mask = None if token_mask is None else token_mask.reshape(-1)
        self.counts: list[torch.Tensor] = []
        self.prob_sums: list[torch.Tensor] = []
        self.tokens = 0
        self._token = None

    def __enter__(self) -> "RoutingCollector":
        self._token = _ACTIVE.set(self)
        return self

    def __exit__(self, *exc) -> None:
        _ACTIVE.reset(self._token)

    def add(self, num_experts: int, indices: torch.Tensor, probs: Optional[torch.Tensor]) -> None:
        if self.mask is not None:
            indices = indices[self.mask]
            probs = None if probs is None else probs[self.mask]
        self.counts.append(torch.bincount(indices.reshape(-1), minlength=num_experts).float())
        self.tokens = indices.shape[0]
        if probs is not None:
            self.prob_sums.append(probs.sum(0))

    def layer_counts(self) -> Optional[torch.Tensor]:
        """Tokens routed to each expert, [layers, experts] (this rank, this forward)."""
        return torch.stack(self.counts) if self.counts else None

    def aux_loss(self, all_reduce: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> torch.Tensor:
        """This rank's share of the pooled load-balancing loss; `all_reduce` sums over data-parallel
        ranks (None for one process)."""
        if len(self.prob_sums) != len(self.counts) or not self.counts:
            raise RuntimeError("aux loss requested but the MoE blocks did not record router probabilities")
        counts = torch.stack(self.counts).sum(0)
        totals = torch.cat([counts, counts.new_tensor([float(self.tokens)])])
        if all_reduce is not None:
            totals = all_reduce(totals)
        counts, tokens = totals[:-1], totals[-1]
        layers = len(self.counts)
        f = counts / (tokens * layers)
        p = torch.stack(self.prob_sums).sum(0) / (tokens * layers)
        return counts.numel() * (f * p).sum()
