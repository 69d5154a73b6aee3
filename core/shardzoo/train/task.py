"""Tasks: how a batch becomes a loss. The task wraps the model and is the FSDP root, so the
trainer's one call gathers every parameter the loss needs (head included)."""

from __future__ import annotations

from typing import Optional

import torch
import torch.distributed as dist
import torch.nn as nn

from .. import ops
from ..moe import RoutingCollector
from ..moe.routing_stats import aux_loss_coef


def _sum_over_ranks(value: torch.Tensor) -> torch.Tensor:
    if dist.is_initialized() and dist.get_world_size() > 1:
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


class CausalLMTask(nn.Module):
    """Next-token loss through the chunked linear + cross-entropy; full logits never exist.

    Works for our models and for any HF causal LM: both expose `get_decoder()` (input ids ->
    hidden states) and `get_output_embeddings()` (the head). MoE models also report their routing
    (shardzoo.moe.record_routing): the load-balancing loss is added when the config asks for it,
    and the expert load is kept for the step metrics.
    """

    def __init__(self, model: nn.Module, chunk_size: int):
        super().__init__()
        self.model = model
        self.chunk_size = chunk_size
        self.aux_coef = aux_loss_coef(getattr(model, "config", None))
        self._expert_load: Optional[torch.Tensor] = None
        self._aux: Optional[torch.Tensor] = None
        self._last_step: tuple[Optional[torch.Tensor], Optional[torch.Tensor]] = (None, None)

    def forward(self, input_ids: torch.Tensor, targets: torch.Tensor, normalizer: float | torch.Tensor,
                position_ids: torch.Tensor | None = None, document_ids: torch.Tensor | None = None,
                micro_batches: int = 1, token_mask: torch.Tensor | None = None,
                pixel_values: torch.Tensor | None = None, loss_weights: torch.Tensor | None = None) -> torch.Tensor:
        """document_ids mark a packed batch: the decoder then keeps attention inside each document
        (models that declare ModelSpec.packed_documents accept them); position_ids restart per
        document there, and under context parallel give each token's place in its row.
        The aux loss of a step is the mean over its `micro_batches` of each micro-batch's aux, counting
        the tokens of `token_mask` (all when None). `loss_weights` weigh each target's CE
        (training.loss_reduction square); `normalizer` is then the step's sum of weights."""
        inputs = {"input_ids": input_ids}
        if position_ids is not None:
            inputs["position_ids"] = position_ids
        if document_ids is not None:
            inputs["document_ids"] = document_ids
        if pixel_values is not None:  # vision-language models: the images of the batch's image tokens
            inputs["pixel_values"] = pixel_values
        with RoutingCollector(token_mask) as routing:
            out = self.model.get_decoder()(**inputs)
        hidden = out if isinstance(out, torch.Tensor) else out[0]
        weight = self.model.get_output_embeddings().weight
        loss = ops.linear_cross_entropy(hidden.flatten(0, 1), weight, targets.flatten(), normalizer=normalizer,
                                        chunk_size=self.chunk_size,
                                        token_weights=None if loss_weights is None else loss_weights.flatten())
        load = routing.layer_counts()
        if load is not None:
            self._expert_load = load if self._expert_load is None else self._expert_load + load
            if self.aux_coef:
                aux = routing.aux_loss(_sum_over_ranks) / micro_batches
                self._aux = aux.detach() if self._aux is None else self._aux + aux.detach()
                loss = loss + self.aux_coef * aux
        return loss

    def end_step(self) -> None:
        """Close the optimizer step: its routing statistics become the ones routing_metrics reports."""
        self._last_step = (self._expert_load, self._aux)
        self._expert_load, self._aux = None, None

    def routing_metrics(self) -> dict:
        """Of the last finished step, over all ranks: the fewest and most tokens any expert of any layer
        received, and the load-balancing loss (without its coefficient). A collective when
        running distributed: every rank must call it at the same step."""
        load, aux = self._last_step
        if load is None:
            return {}
        load = _sum_over_ranks(load)
        out = {"expert_tokens_min": int(load.min()), "expert_tokens_max": int(load.max())}
        if aux is not None:
            out["aux_loss"] = float(_sum_over_ranks(aux))
        return out


TASKS = {"causal_lm": CausalLMTask}
