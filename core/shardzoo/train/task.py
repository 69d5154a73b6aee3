"""Tasks: where a model's batches come from and how a batch becomes a loss. The task wraps the
model and is the FSDP root, so the trainer's one call gathers every parameter the loss needs
(head included). Core has the causal-LM task; a model package may bring its own Task subclass
(ModelSpec.task), e.g. Wan's flow matching on video latents."""

from __future__ import annotations

import types
from typing import Optional

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.distributed.tensor import DTensor

from .. import ops
from ..config import ConfigError, validate_tokenizer_path
from ..moe import RoutingCollector
from ..moe.routing_stats import aux_loss_coef
from ..parallel.tensor import vocab_parallel_loss_inputs
from .hf_config import check_vocab


class Task(nn.Module):
    """The contract between the trainer and what it trains. The trainer calls, in order:

    1. `check_config(cfg, spec, hf_config)` before any process group exists: every option and path the
       task needs, failing with ConfigError naming the key;
    2. `build_data(cfg, spec, hf_config, ...)` -> an object with `loader` (iterates optimizer steps, each a
       list of micro-batches; checkpointable state_dict), `rows`, `tokenizer`, `describe()`, `skipped()`;
    3. `from_config(model, cfg, hf_config)` after the model is parallelized, before FSDP wraps the task;
    4. per micro-batch `task(**batch.inputs(), normalizer=..., micro_batches=...)` -> the loss, where a
       batch has `to(device)`, `inputs()`, `loss_normalizer` (its share of the step's denominator, summed
       over micro-batches and ranks into `normalizer`), `num_tokens` and `attention_length` (throughput);
    5. `end_step()` after each optimizer step and `step_metrics()` when logging (collective).
    """

    loss_copies: int = 1
    """Ranks that compute the same loss term (e.g. context-parallel ranks that each see the gathered
    output, the tp ranks of a group under tensor parallel); the logged loss, summed over ranks, counts it
    once (logged_loss). The gradient needs no such care."""
    casts_inputs: bool = True
    """FSDP mixed precision casts the task's floating inputs to param_dtype; False keeps them (a task
    that forms targets from them in fp32 and casts the model input itself)."""

    @classmethod
    def check_config(cls, cfg, spec, hf_config) -> None:
        raise NotImplementedError

    @classmethod
    def build_data(cls, cfg, spec, hf_config, *, rank: int, world: int, local_rank: int, barrier, cp_rank: int,
                   cp_size: int):
        """rank/world among the data-parallel ranks; the cp_size ranks of a context-parallel group share
        one and are told their cp_rank."""
        raise NotImplementedError

    @classmethod
    def from_config(cls, model: nn.Module, cfg, hf_config) -> "Task":
        raise NotImplementedError

    def logged_loss(self, loss: torch.Tensor) -> torch.Tensor:
        """This rank's part of the logged loss of a micro-batch: summed over all ranks it is the loss."""
        return loss.detach().float() / self.loss_copies

    def end_step(self) -> None:
        """Close the optimizer step."""

    def step_metrics(self) -> dict:
        """Task metrics of the last finished step, over all ranks."""
        return {}


def _head_loss(head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor, normalizer, chunk_size: int,
               token_weights: Optional[torch.Tensor]) -> torch.Tensor:
    """hidden [B, T, H], targets and token_weights [B, T] -> the loss."""
    weight, vocab_group = head.weight, None
    if isinstance(weight, DTensor):  # tensor parallel: the head's vocab rows are split over the tp ranks
        hidden, weight, vocab_group = vocab_parallel_loss_inputs(hidden, weight)
    return ops.linear_cross_entropy(hidden.flatten(0, 1), weight, targets.flatten(), normalizer=normalizer,
                                    chunk_size=chunk_size, vocab_group=vocab_group,
                                    token_weights=None if token_weights is None else token_weights.flatten())


def _sum_over_ranks(value: torch.Tensor) -> torch.Tensor:
    if dist.is_initialized() and dist.get_world_size() > 1:
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


class CausalLMTask(Task):
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
        # The chunked loss reads the head's weight without calling the head; as a method of the head
        # that FSDP treats as a forward (fsdp_forward_methods), the weight is gathered (and its gradient
        # reduced) also when the head is an FSDP unit of its own (MindSpeed's `lm_head` in fsdp_modules).
        head = model.get_output_embeddings()
        head.head_loss = types.MethodType(_head_loss, head)
        head.fsdp_forward_methods = ("head_loss",)
        self.aux_coef = aux_loss_coef(getattr(model, "config", None))
        self._expert_load: Optional[torch.Tensor] = None
        self._aux: Optional[torch.Tensor] = None
        self._aux_term: Optional[torch.Tensor] = None
        self._last_step: tuple[Optional[torch.Tensor], Optional[torch.Tensor]] = (None, None)

    @classmethod
    def check_config(cls, cfg, spec, hf_config) -> None:
        validate_tokenizer_path(cfg)
        if cfg.data.packing and not (spec is not None and spec.packed_documents):
            what = f"model package {spec.name!r}" if spec else "the transformers AutoModel path"
            raise ConfigError(f"data.packing: {what} cannot keep attention inside packed documents, so packed "
                              "samples would attend to each other; set data.packing: false or use a model package "
                              "that declares packed_documents")

    @classmethod
    def build_data(cls, cfg, spec, hf_config, *, rank: int, world: int, local_rank: int, barrier, cp_rank: int,
                   cp_size: int):
        """Tokenised rows (sft or pretraining data) from data:, read with the model's tokenizer; a
        vision-language package's images through its ModelSpec.images."""
        from ..data import build_train_data, load_tokenizer

        tok_path = cfg.model.tokenizer_name_or_path or cfg.model.model_name_or_path
        tokenizer = load_tokenizer(tok_path, cfg.model.trust_remote_code)
        check_vocab(hf_config, tokenizer, tok_path)
        images = spec.images(hf_config, cfg.data) if spec is not None and spec.images is not None else None
        data = build_train_data(cfg, tokenizer, rank=rank, world=world, local_rank=local_rank, barrier=barrier,
                                cp_rank=cp_rank, cp_size=cp_size, images=images)
        data.tokenizer = tokenizer
        return data

    @classmethod
    def from_config(cls, model: nn.Module, cfg, hf_config) -> "CausalLMTask":
        return cls(model, cfg.training.loss_chunk_size)

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
        loss = self.model.get_output_embeddings().head_loss(hidden, targets, normalizer, self.chunk_size, loss_weights)
        load = routing.layer_counts() if self.training else None  # evaluation leaves the training's statistics
        if load is not None:
            self._expert_load = load if self._expert_load is None else self._expert_load + load
            if self.aux_coef:
                aux = routing.aux_loss(_sum_over_ranks) / micro_batches
                self._aux = aux.detach() if self._aux is None else self._aux + aux.detach()
                self._aux_term = self.aux_coef * aux.detach()
                loss = loss + self.aux_coef * aux
        return loss

    def logged_loss(self, loss: torch.Tensor) -> torch.Tensor:
        # The aux loss is a per-rank share of the pooled one (each rank routes its own tokens, also under
        # tensor parallel): only the cross-entropy is a copy.
        aux, self._aux_term = self._aux_term, None
        if aux is None:
            return super().logged_loss(loss)
        return (loss.detach().float() - aux) / self.loss_copies + aux

    def end_step(self) -> None:
        """Close the optimizer step: its routing statistics become the ones routing_metrics reports."""
        self._last_step = (self._expert_load, self._aux)
        self._expert_load, self._aux = None, None

    def step_metrics(self) -> dict:
        return self.routing_metrics()

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
"""Core tasks by the name a ModelSpec may give (a package task is given as its class)."""


def task_class(spec) -> type[Task]:
    """The task a spec trains with (the causal LM for the AutoModel path)."""
    task = spec.task if spec is not None else "causal_lm"
    if isinstance(task, str):
        return TASKS[task]
    assert isinstance(task, type) and issubclass(task, Task), f"ModelSpec.task of {spec.name} is not a Task"
    return task
