"""`shardzoo plan`: per-rank memory of a config's parallel plan, without devices or weights.

The model is built on the meta device and parallelized by the same code as training (expert
parallel, recompute, FSDP2) over a fake process group of the requested world size, so the
sharded sizes are the real ones (FSDP's padding included). Reported for rank 0, which holds the
largest shards:

  parameters   local shards, in the dtype they are stored (fp32 master weights); with
               parallel.offload_to_cpu on an accelerator these three rows are host memory, outside the total
  gradients    the same shapes and dtype (FSDP2 keeps sharded gradients)
  optimizer    AdamW: exp_avg and exp_avg_sq, fp32, per local element
  gathered     unsharded parameters in param_dtype while computing: the root unit (embeddings,
               head) plus (1 + num_to_forward_prefetch) of the largest block (its experts: this
               rank's ep share)
  reduction    gradients on their way to FSDP's reduce-scatter in backward: the root unit's
               unsharded gradients (the head's is computed first and reduced last) and the largest
               block's unsharded gradients plus its reduce-scatter input (reduce_dtype)
  activations  an estimate (a model package may give its own, ModelSpec.activation_bytes; this is
               the causal LM's), per micro-batch of per_device_train_batch_size x cutoff_len / cp_size tokens
               (context parallel: the rank's slice; inside attention T x H/cp is the same size; tensor
               parallel: the residual stream and norm outputs on T/tp tokens, each block's gathered input
               on T, heads, MLP columns and the loss's vocab rows divided by tp):
               with recompute each block saves its input (H) and one block's internals are saved,
               without it every block's internals (the norms keep their normalised output, not
               their input): attention q and k before and after rotary, v, the output and its copy
               for the o projection, the two norm outputs; MLP gate, up, silu(gate) and
               product (dense: 4 I; MoE: k copies of the token, 2 I + I per copy, plus fp32 router
               probabilities); plus the loss chunk's fp32
               logits and their gradient (loss_chunk_size x vocab x 4 x 2). For vision-language
               models the language model's; the vision tower's (per image tile) are not included.

Two more peaks, apart from training's:

  resume       loading a checkpoint: the optimizer's state is created by a zero step (parameters,
               zero gradients and state), then read into; on CPU the rank's checkpoint file is mapped
               while it is read, so its pages (parameters + optimizer state, reclaimable file cache)
               count in the resident set on top of the state, plus one read buffer of the largest
               tensor shard. Accelerators read through host memory: only the first sum is device memory.
  export       `shardzoo export` (host memory per rank), an upper bound: the largest group of tensors
               converted together, held three times in the checkpoint's dtype (the read target, the
               mapped file pages, the reader's slice: the worst case, a tensor saved whole by one rank;
               saved in shards, the last two hold one shard at a time), plus once in the export dtype
               when converting copies it (a dtype change, tensors joined), plus the checksum buffer and
               the reader's runtime (EXPORT_RUNTIME_BYTES).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.distributed.fsdp import FSDPModule
from torch.distributed.tensor import DTensor

from .checkpoint.adapter import StateDictAdapter
from .checkpoint.export import conversion_units, export_dtype_of
from .config import Config
from .device import detect_device_type
from .hub import resolve_hub_names
from .moe import GroupedExperts
from .parallel import build_meshes
from .parallel.fsdp import to_dtype
from .parallel.mesh_shape import mesh_shape
from .train.build import build_model
from .train.hf_config import resolve_model, text_config

ADAM_STATES = 2
# Export's fixed cost: the manifest check's 8 MiB checksum buffer and ~5 MiB of reader runtime (the
# intercept of peak vs largest tensor over 16-99 MiB tensors, benchmarks/export_memory.py).
EXPORT_RUNTIME_BYTES = 13 * 2**20


@dataclass
class MemoryPlan:
    world: int
    mesh: str
    params: int
    grads: int
    optimizer: int
    gathered: int
    reduction: int
    activations: int
    resume: int = 0
    export: int = 0
    offloaded: bool = False
    """parallel.offload_to_cpu on an accelerator: the sharded state lives in host memory, not the device's."""

    @property
    def total(self) -> int:
        """Device memory (CPU training: the process's)."""
        state = 0 if self.offloaded else self.params + self.grads + self.optimizer
        return state + self.gathered + self.reduction + self.activations

    def rows(self) -> list[tuple[str, int]]:
        host = " [host]" if self.offloaded else ""
        return [("parameters (sharded)" + host, self.params), ("gradients (sharded)" + host, self.grads),
                ("optimizer state (AdamW)" + host, self.optimizer), ("gathered for compute", self.gathered),
                ("gradients being reduced", self.reduction),
                ("activations (estimate)", self.activations), ("total", self.total)]


def _nbytes(t: torch.Tensor) -> int:
    local = t.to_local() if isinstance(t, DTensor) else t
    return local.numel() * local.element_size()


def _tp_split(p: torch.Tensor) -> int:
    """How many tensor-parallel ranks share this parameter's elements (FSDP's gather leaves that split)."""
    if not isinstance(p, DTensor) or p.device_mesh.mesh_dim_names is None:
        return 1
    names = p.device_mesh.mesh_dim_names
    return math.prod(p.device_mesh.size(i) for i, pl in enumerate(p.placements) if pl.is_shard() and names[i] == "tp")


def _unit_elements(task: nn.Module, ep: int, trainable: bool = False) -> tuple[int, int]:
    """Elements of the root unit's own parameters and of the largest block (with its experts: this
    rank's ep share) when unsharded; TP-split parameters count their tp shard. `trainable`: only those
    that get gradients (frozen ones are gathered, never reduced)."""
    named = [(n, m) for n, m in task.named_modules() if isinstance(m, FSDPModule)]
    units = [m for _, m in named]
    owner: dict[int, nn.Module] = {}
    # Innermost units claim their parameters first; the root ("") takes what is left.
    for _, unit in sorted(named, key=lambda nm: -(nm[0].count(".") + 1) if nm[0] else 0):
        for p in unit.parameters():
            owner.setdefault(id(p), unit)
    size: dict[int, int] = {}
    for unit in units:
        for p in unit.parameters():
            if owner[id(p)] is unit and (p.requires_grad or not trainable):
                numel = p.numel() // (ep if isinstance(unit, GroupedExperts) else 1) // _tp_split(p)
                size[id(unit)] = size.get(id(unit), 0) + numel
    blocks = []
    for unit in units:
        if unit is task or isinstance(unit, GroupedExperts):
            continue
        inner = sum(size.get(id(m), 0) for m in unit.modules() if isinstance(m, GroupedExperts))
        blocks.append(size.get(id(unit), 0) + inner)
    return size.get(id(task), 0), max(blocks, default=0)


def _gathered_bytes(root: int, block: int, cfg: Config) -> int:
    """Unsharded parameters in param_dtype while computing: the root unit plus the block being
    computed and the prefetched ones."""
    width = (to_dtype(cfg.parallel.param_dtype) or torch.float32).itemsize
    return (root + (1 + cfg.parallel.num_to_forward_prefetch) * block) * width


def _reduction_bytes(root: int, block: int, cfg: Config) -> int:
    """Gradients on their way to the reduce-scatter in backward: the root unit's unsharded gradients
    (its head's gradient is computed first, reduced last) and, for the block being reduced, its
    unsharded gradients plus the reduce-scatter input they are copied into (reduce_dtype). `root` and
    `block` count trainable elements: frozen parameters have no gradient."""
    width = (to_dtype(cfg.parallel.param_dtype) or torch.float32).itemsize
    reduce_width = (to_dtype(cfg.parallel.reduce_dtype) or torch.float32).itemsize
    return root * width + block * (width + reduce_width)


def _resume_bytes(params: int, grads: int, optimizer: int, largest_shard: int, device: str, offloaded: bool) -> int:
    """The resume peak described in the module docstring (offloaded: all of it is host memory)."""
    created = params + grads + optimizer
    if device != "cpu":
        return 0 if offloaded else created
    return max(created, 2 * (params + optimizer) + largest_shard)


def _export_bytes(model: nn.Module, spec, hf_config, export_dtype: str) -> int:
    """The export peak described in the module docstring, from the model's full (unsharded) shapes."""
    specs = {name: (p.shape, p.dtype) for name, p in model.named_parameters()}
    adapter = spec.adapter if spec is not None else StateDictAdapter()
    raw = hf_config.to_dict() if hasattr(hf_config, "to_dict") else dict(hf_config)
    out = export_dtype_of(export_dtype, raw, specs).itemsize
    units = conversion_units(list(specs), specs, adapter, hf_config)

    def held(unit: list[str]) -> int:
        # The converted copy exists when the dtype changes or tensors are joined; a rename is the tensor itself.
        copied = len(unit) > 1 or any(specs[n][1].itemsize != out for n in unit)
        return sum(specs[n][0].numel() * (3 * specs[n][1].itemsize + (out if copied else 0)) for n in unit)

    return max(map(held, units), default=0) + EXPORT_RUNTIME_BYTES


def activation_bytes(cfg: Config, hf_config, recompute: bool) -> int:
    """The estimate described in the module docstring (the language model's; a vision tower's
    activations scale with image tiles and are not included). Per-head q / k norms (Qwen3) add
    nothing: rms_norm keeps its normalised output, which rotary then reads, not its input."""
    hf_config = text_config(hf_config)
    width = (to_dtype(cfg.parallel.param_dtype) or torch.float32).itemsize
    n = cfg.training.per_device_train_batch_size * -(-cfg.data.cutoff_len // cfg.parallel.cp_size)
    tp = cfg.parallel.tp_size
    h, layers = hf_config.hidden_size, hf_config.num_hidden_layers
    d = getattr(hf_config, "head_dim", None) or h // hf_config.num_attention_heads
    # This rank's heads under TP (kv heads fewer than tp: one each).
    q, kv = hf_config.num_attention_heads * d // tp, max(hf_config.num_key_value_heads // tp, 1) * d
    # Sequence parallel: the residual stream and the norms' outputs hold n / tp tokens; each block keeps
    # its gathered input (all n tokens) for the column-parallel projections' backward.
    seq = -(-n // tp)
    gathered = n * h if tp > 1 else 0
    # The two norm outputs; q and k as projected (rotary keeps its input) and after rotary, v, the
    # attention output and its copy in the o projection's layout (measured by autograd's saved tensors).
    attention = 2 * seq * h + gathered + n * (4 * q + 3 * kv)
    experts = getattr(hf_config, "num_local_experts", None) or getattr(hf_config, "num_experts", 0) or 0
    if experts:  # under TP an MoE block runs on the rank's own tokens
        k = hf_config.num_experts_per_tok
        inter = getattr(hf_config, "moe_intermediate_size", None) or hf_config.intermediate_size
        mlp = seq * (k * (h + 3 * inter) + experts * 4 // width)
    else:
        # gate and up, silu(gate) and the product (the reference swiglu; NPU's fused kernel keeps one I less)
        mlp = gathered + n * 4 * hf_config.intermediate_size // tp
    block_inputs = layers * seq * h * width if recompute else 0  # the checkpoints' inputs
    internals = (attention + mlp) * width
    # The loss: each chunk's fp32 logits and their gradient over this rank's vocab rows (all n hidden
    # states gathered under TP).
    logits = min(cfg.training.loss_chunk_size, n) * (hf_config.vocab_size // tp) * 4 * 2 + gathered * width
    return block_inputs + (internals if recompute else layers * internals) + logits


def plan_memory(cfg: Config, world: int) -> MemoryPlan:
    shape = mesh_shape(cfg.parallel, world)
    resolve_hub_names(cfg.model)
    spec, hf_config = resolve_model(cfg)
    from torch.testing._internal.distributed.fake_pg import FakeStore  # registers the "fake" backend

    if dist.is_initialized():
        raise RuntimeError("shardzoo plan builds its own fake process group; run it outside a distributed job")
    dist.init_process_group("fake", store=FakeStore(), rank=0, world_size=world)
    try:
        meshes = build_meshes("cpu", shape.replicate, shape.shard, shape.ep_fsdp, shape.ep, shape.cp, shape.tp)
        built = build_model(cfg, spec, hf_config, meshes, torch.device("meta"), materialize=False)
        params = sum(_nbytes(p) for p in built.task.parameters())
        trainable = sum(_nbytes(p) for p in built.task.parameters() if p.requires_grad)
        locals_ = sum((p.to_local() if isinstance(p, DTensor) else p).numel()
                      for p in built.task.parameters() if p.requires_grad)
        root, block = _unit_elements(built.task, shape.ep)
        trained_root, trained_block = _unit_elements(built.task, shape.ep, trainable=True)
        largest_shard = max((_nbytes(p) for p in built.task.parameters()), default=0)
        export = _export_bytes(built.model, spec, hf_config, cfg.training.export_dtype)
    finally:
        dist.destroy_process_group()
    mesh = shape.describe()
    recompute = bool(built.recomputed)
    if spec is not None and spec.activation_bytes is not None:
        activations = spec.activation_bytes(cfg, hf_config, recompute)
    else:
        activations = activation_bytes(cfg, hf_config, recompute)
    optimizer = ADAM_STATES * 4 * locals_
    device = detect_device_type() if cfg.training.device == "auto" else cfg.training.device
    offloaded = cfg.parallel.offload_to_cpu and device != "cpu"
    return MemoryPlan(world, mesh, params, trainable, optimizer, _gathered_bytes(root, block, cfg),
                      _reduction_bytes(trained_root, trained_block, cfg), activations,
                      _resume_bytes(params, trainable, optimizer, largest_shard, device, offloaded), export, offloaded)


def format_plan(plan: MemoryPlan, device_bytes: Optional[int]) -> str:
    lines = [f"per-rank memory, world {plan.world} ({plan.mesh}), rank 0:"]
    lines += [f"  {name:<26}{value / 2**30:10.3f} GiB" for name, value in plan.rows()]
    lines += [f"  {'resuming (peak)':<26}{plan.resume / 2**30:10.3f} GiB   loading a checkpoint, before training",
              f"  {'hf export (host, at most)':<26}{plan.export / 2**30:10.3f} GiB   per rank, shardzoo export"]
    if device_bytes is not None:
        verdict = "fits" if plan.total <= device_bytes else "does NOT fit"
        lines.append(f"  {verdict} in {device_bytes / 2**30:.1f} GiB per device "
                     f"({100 * plan.total / device_bytes:.0f}% used; allocator overhead and fragmentation not counted)")
    return "\n".join(lines)
