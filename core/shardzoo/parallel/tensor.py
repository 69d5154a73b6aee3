"""Tensor parallel with sequence parallel (Megatron's layout) through DTensor, on the innermost mesh axis.

Between blocks the residual stream is split by sequence over the tp ranks ([B, T/tp, H] per rank, a
DTensor Shard(1)); the norms on it run on the local tokens (their weight is replicated, its gradient
summed over the ranks by DTensor). A block (attention, dense MLP) gathers the whole sequence once at its
input, its column-parallel projections (q/k/v, gate/up) compute this rank's heads or columns, and its
row-parallel projection (o, down) gives partial sums that a reduce-scatter turns back into the
sequence split:

    h [B, T/tp, H] --all-gather--> x [B, T, H] --q,k,v colwise--> heads H_q/tp, H_kv/tp (local tensors)
    attention on the local heads --o rowwise--> partial [B, T, H] --reduce-scatter--> [B, T/tp, H]

Per-head parameters (a q/k norm over head_dim, attention sinks) live with their heads: a norm gets its
input as a DTensor split on the head dim so its replicated weight's gradient is summed; sinks are
split on dim 0 like the heads. The embedding is vocab-parallel (each rank holds V/tp rows; the
lookup's partial sums are reduce-scattered into the sequence split) and so is the head: the chunked
loss gathers the final hidden states and computes each chunk's log-sum-exp over the vocab shards with
two small all-reduces, so no rank ever holds logits over the whole vocabulary.

Which modules are which is data (TensorParallelPlan, a package's ParallelPlan.tp); MindSpeed-LLM's
`parallel.tp_colwise` / `tp_rowwise` patterns override the projection lists. FSDP2 then shards every
parameter over the other ranks (data x context) on top of its tp split.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn as nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import DTensor, Partial, Replicate, Shard
from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

from ..errors import ConfigError
from ..ops import CoreAttention
from .context import SequenceShard
from .patterns import match_modules
from .tensor_styles import (
    LocalParams,
    ReplicatedKVHeads,
    SplitWidthNorm,
    back_to_sequence_split,
    distribute_params,
    gather_sequence,
    local_kernel_inputs,
    split_inputs_embeds,
    to_local_tokens,
)


@dataclass(frozen=True)
class TensorParallelPlan:
    """Module patterns (parallel/patterns.py) of one model family; empty `colwise` = no TP support."""

    colwise: tuple[str, ...] = ()
    """Linear layers split by output features (q/k/v, gate/up): this rank's heads or columns."""
    rowwise: tuple[str, ...] = ()
    """Linear layers split by input features (o, down): partial sums, reduce-scattered to the sequence split."""
    sequence_norms: tuple[str, ...] = ()
    """Norms on the residual stream, run on this rank's tokens."""
    head_norms: tuple[str, ...] = ()
    """Norms over head_dim of the split heads (Qwen3's q_norm/k_norm)."""
    block_inputs: tuple[str, ...] = ()
    """Modules whose first input is the residual stream (attention, MLP): the sequence is gathered there."""
    kv_projections: tuple[str, ...] = ()
    """The k/v projections among `colwise`: with fewer kv heads than tp ranks they are replicated instead,
    each rank keeping the kv head its query heads read (as Ulysses does)."""
    head_params: tuple[str, ...] = ()
    """Per-head parameters (dotted names, patterns allowed in the module part) split on dim 0 with the heads."""
    embedding: Optional[str] = "model.embed_tokens"
    head: Optional[str] = "lm_head"
    width_norms: tuple[str, ...] = ()
    """RMSNorms over all heads of a column-parallel output (weight split with the heads; Wan's norm_q/k)."""
    local_params: tuple[str, ...] = ()
    """Modules ("" = the root) whose own parameters each rank uses whole on its own tokens (modulation
    tables, a patch embedding, the output projection): replicated, their gradient summed over the ranks."""
    splits_own_tokens: bool = False
    """The model makes its tokens itself and marks the split with SequenceShard (a video DiT): the residual
    stream is then plain local tensors, this rank's even share of the tokens."""
    inputs_embeds_entry: Optional[str] = None
    """A decoder called with `inputs_embeds` (a vision-language model splices image features into the
    embedded ids first): the embedding then hands every rank the whole embedded sequence, and the
    sequence split starts at this module's input."""

    @property
    def supported(self) -> bool:
        return bool(self.colwise)


def check_tp_split(tp_size: int, where: str, **counts: int) -> None:
    """ConfigError unless every named count (vocab, intermediate size) splits evenly over the tp ranks
    (heads: parallel.context.check_heads)."""
    for name, count in counts.items():
        if count % tp_size:
            raise ConfigError(f"parallel.tp_size={tp_size}: {where} has {name}={count}, which does not split evenly "
                              f"over {tp_size} tensor-parallel ranks; use a tp_size that divides {count}")


@dataclass
class TensorParallelApplied:
    split: list[str]
    """The projections split over the tp ranks."""
    token_local: list[str]
    """Blocks on the residual stream with nothing split (MoE layers): they run on this rank's tokens, so
    the tp ranks are data-parallel ranks to their parameters (FSDP must shard them over every rank)."""


def apply_tensor_parallel(model: nn.Module, plan: TensorParallelPlan, tp_mesh: DeviceMesh, kv_heads: int = 0,
                          colwise: Optional[Sequence[str]] = None,
                          rowwise: Optional[Sequence[str]] = None) -> TensorParallelApplied:
    """Split `model` over `tp_mesh` in place. `kv_heads`: the model's key/value heads (0: they split like the
    query heads). `colwise`/`rowwise`: the user's patterns (parallel.tp_colwise / tp_rowwise) instead of the
    plan's. A user's pattern must match; a plan's may match nothing (a model whose layers are all MoE has
    no dense MLP to split)."""
    styles: dict[str, object] = {}
    blocks = [name for name, _ in match_modules(model, plan.block_inputs, "ParallelPlan.tp.block_inputs")]

    def add(patterns: Sequence[str], key: str, style, required: bool = False) -> list[str]:
        names = [name for name, _ in match_modules(model, patterns, key, allow_unmatched=not required)]
        if required:  # the user's patterns may name only projections inside the blocks the plan splits
            outside = [n for n in names if not any(n.startswith(b + ".") for b in blocks)]
            if outside:
                raise ConfigError(f"{key}: {outside[:3]} are outside the blocks tensor parallel splits (e.g. "
                                  f"{blocks[0]}); narrow the patterns to those blocks' projections, e.g. "
                                  f"{blocks[0]}.q_proj, or leave {key} unset for the package's plan")
        styles.update({name: style for name in names})
        return names

    split = add(colwise or plan.colwise, "parallel.tp_colwise", ColwiseParallel(), required=bool(colwise))
    tp = tp_mesh.size()
    if 0 < kv_heads < tp and plan.kv_projections:
        add(plan.kv_projections, "ParallelPlan.tp.kv_projections", ReplicatedKVHeads(kv_heads))
    split += add(rowwise or plan.rowwise, "parallel.tp_rowwise",
                 RowwiseParallel(output_layouts=Shard(1), use_local_output=plan.splits_own_tokens),
                 required=bool(rowwise))
    add(plan.width_norms, "ParallelPlan.tp.width_norms", SplitWidthNorm())
    # On this rank's tokens (the residual stream's split) or heads (over head_dim): the weight's
    # gradient is the sum of the ranks' parts.
    add(plan.sequence_norms, "ParallelPlan.tp.sequence_norms", LocalParams())
    add(plan.head_norms, "ParallelPlan.tp.head_norms", LocalParams())
    if plan.embedding:
        # Vocab-parallel: each rank looks up its rows, the partial sums are reduce-scattered into the
        # sequence split (or all-reduced, when image features are spliced in before the decoder).
        output = Replicate() if plan.inputs_embeds_entry else Shard(1)
        add([plan.embedding], "ParallelPlan.tp.embedding",
            RowwiseParallel(input_layouts=Replicate(), output_layouts=output,
                            use_local_output=plan.inputs_embeds_entry is not None))
    if plan.head:
        # Its forward (full logits, outside training) gathers the vocab; the training loss reads the
        # weight shard directly (vocab_parallel_loss_inputs).
        add([plan.head], "ParallelPlan.tp.head",
            ColwiseParallel(input_layouts=Shard(1), output_layouts=Replicate()))
    tied = _tied_head(model, plan)
    # src_data_rank=None: every rank cuts its shard locally (the model is on the meta device, or built
    # from one seed on every rank).
    parallelize_module(model, tp_mesh, styles, src_data_rank=None)
    if tied:
        # Both split the vocab rows the same way (Shard(0)); distributing each made two parameters of one.
        tied[1].weight = tied[0].weight
    for _, module in match_modules(model, plan.local_params, "ParallelPlan.tp.local_params"):
        LocalParams()._apply(module, tp_mesh)  # also the root, which parallelize_module does not take
    if plan.splits_own_tokens:
        for module in model.modules():
            if isinstance(module, SequenceShard):
                module.tp = (tp, tp_mesh.get_local_rank(), tp_mesh.get_group())
    token_local = []
    for name in blocks:
        module = model.get_submodule(name)
        if any(n.startswith(name + ".") for n in styles):
            module.register_forward_pre_hook(gather_sequence(tp_mesh))
        else:
            module.register_forward_pre_hook(to_local_tokens, with_kwargs=True)
            module.register_forward_hook(back_to_sequence_split, with_kwargs=True)
            token_local.append(name)
    _split_head_params(model, plan.head_params, tp_mesh)
    if plan.inputs_embeds_entry:
        model.get_submodule(plan.inputs_embeds_entry).register_forward_pre_hook(split_inputs_embeds(tp_mesh),
                                                                               with_kwargs=True)
    for module in model.modules():
        if isinstance(module, CoreAttention):
            module.register_forward_pre_hook(local_kernel_inputs, with_kwargs=True)
    return TensorParallelApplied(split, token_local)


def _tied_head(model: nn.Module, plan: TensorParallelPlan) -> Optional[tuple[nn.Module, nn.Module]]:
    """(embedding, head) when the head's weight is the embedding's (tie_word_embeddings)."""
    if not (plan.embedding and plan.head):
        return None
    embedding, head = model.get_submodule(plan.embedding), model.get_submodule(plan.head)
    return (embedding, head) if head.weight is embedding.weight else None


def _split_head_params(model: nn.Module, names: Sequence[str], tp_mesh: DeviceMesh) -> None:
    for pattern in names:
        module_pattern, _, param_name = pattern.rpartition(".")
        for _, module in match_modules(model, [module_pattern], "ParallelPlan.tp.head_params"):
            distribute_params(module, tp_mesh, Shard(0), [param_name])


def vocab_parallel_loss_inputs(hidden: torch.Tensor, weight: torch.Tensor):
    """(hidden [B, T, H] of every token, this rank's vocab rows of the head, the tp group) for a head whose
    weight is split over the vocab. The gather's backward sums the ranks' partial input gradients
    (each rank's rows contribute their part) and hands each rank its tokens' share."""
    mesh = weight.device_mesh
    if isinstance(hidden, DTensor):
        hidden = hidden.redistribute(placements=[Replicate()]).to_local(grad_placements=[Partial()])
    return hidden, weight.to_local(), mesh.get_group()
