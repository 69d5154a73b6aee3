"""Routing statistics of one forward: expert load for the metrics, and the load-balancing loss.

Each MoE block calls `record_routing(logits, indices, probs)`; while a RoutingCollector is
active (the task's forward) it keeps per layer the token count of every expert and, when the aux
loss is on, the router probabilities softmax(logits). Only real tokens count (the batch's
token_mask: padding and filler rows are left out, as transformers does with an attention mask),
so the loss does not depend on how a batch is split and padded over ranks. Activation recompute
re-runs the blocks during backward, outside the collector, so nothing is counted twice; and the
collector only keeps references inside a block — the masking and sums run after the forward — so a
recomputed block saves exactly the tensors its first forward saved (non-reentrant checkpointing
checks that).

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


def narrow_routing(start: int, length: int) -> None:
    """Tell the active collector (if any) which tokens of each row this rank's MoE blocks see."""
    collector = _ACTIVE.get()
    if collector is not None:
        collector.narrow(start, length)


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
        self.rows_mask = token_mask
        self.mask = None if token_mask is None else token_mask.reshape(-1)
        self.layers: list[tuple[int, torch.Tensor, Optional[torch.Tensor]]] = []
        self._token = None

    def __enter__(self) -> "RoutingCollector":
        self._token = _ACTIVE.set(self)
        return self

    def __exit__(self, *exc) -> None:
        _ACTIVE.reset(self._token)

    def narrow(self, start: int, length: int) -> None:
        """The MoE blocks see tokens start .. start + length - 1 of each row (tensor parallel's sequence
        split): count the mask's tokens there."""
        if self.rows_mask is not None:
            assert self.rows_mask.dim() == 2, "a sequence-split forward passes its token_mask as [B, T]"
            self.mask = self.rows_mask[:, start:start + length].reshape(-1)

    def add(self, num_experts: int, indices: torch.Tensor, probs: Optional[torch.Tensor]) -> None:
        # References only: an operation here would run inside a recomputed block's first forward and
        # not in its recomputation.
        self.layers.append((num_experts, indices, probs))

    def _counted(self, t: torch.Tensor) -> torch.Tensor:
        return t if self.mask is None else t[self.mask]

    @property
    def tokens(self) -> int:
        return self._counted(self.layers[-1][1]).shape[0] if self.layers else 0

    def layer_counts(self) -> Optional[torch.Tensor]:
        """Tokens routed to each expert, [layers, experts] (this rank, this forward)."""
        if not self.layers:
            return None
        return torch.stack([torch.bincount(self._counted(indices).reshape(-1), minlength=n).float()
                            for n, indices, _ in self.layers])

    def aux_loss(self, all_reduce: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> torch.Tensor:
        """This rank's share of the pooled load-balancing loss; `all_reduce` sums over data-parallel
        ranks (None for one process)."""
        if not self.layers or any(probs is None for _, _, probs in self.layers):
            raise RuntimeError("aux loss requested but the MoE blocks did not record router probabilities")
        counts = self.layer_counts().sum(0)
        totals = torch.cat([counts, counts.new_tensor([float(self.tokens)])])
        if all_reduce is not None:
            totals = all_reduce(totals)
        counts, tokens = totals[:-1], totals[-1]
        layers = len(self.layers)
        f = counts / (tokens * layers)
        p = torch.stack([self._counted(probs).sum(0) for _, _, probs in self.layers]).sum(0) / (tokens * layers)
        return counts.numel() * (f * p).sum()
