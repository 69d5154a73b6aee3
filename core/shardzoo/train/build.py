"""Build the model for training: config -> (registered package | AutoModel) -> parallelize -> weights.

The parallelize checklist runs in a fixed order (docs/architecture.md: TP -> EP -> CP -> freeze -> the
package's own step -> recompute -> compile -> FSDP). Registered models are
built on the meta device and materialised shard by shard; the AutoModel path builds the HF model on
the CPU first.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
import torch.nn as nn

from ..checkpoint import iter_safetensors
from ..config import Config, ConfigError, resolve_path
from ..moe.routing_stats import aux_loss_coef
from ..parallel import Meshes, apply_context_parallel, apply_expert_parallel, apply_fsdp, apply_recompute
from ..parallel.compile import apply_compile
from ..parallel.context import check_heads
from ..parallel.fp32_parts import Fp32Parts, find_fp32_parts
from ..parallel.fsdp import to_dtype
from ..parallel.materialize import init_parameters, load_parameters, move_unsharded
from ..parallel.patterns import match_modules
from ..parallel.tensor import TensorParallelApplied, apply_tensor_parallel, check_tp_split
from ..registry import ModelSpec
from .hf_config import text_config
from .task import task_class

log = logging.getLogger(__name__)


@dataclass
class BuiltModel:
    model: nn.Module
    """The HF-shaped model (module names as in the checkpoint)."""
    task: nn.Module
    """The FSDP root the trainer calls: batch -> loss."""
    spec: Optional[ModelSpec]
    hf_config: Any
    fsdp_units: list[str]
    recomputed: list[str]
    expert_parallel: list[str]
    context_parallel: list[str]
    frozen: list[str]
    flops_per_token: Callable[[int], float]
    compiled: list[str] = field(default_factory=list)
    customised: list[str] = field(default_factory=list)
    """What the package's own ModelSpec.parallelize step changed."""
    replicated: list[nn.Parameter] = field(default_factory=list)
    """Trainable parameters FSDP does not manage (parallel.ignored_modules): whole on every rank, their
    gradients summed over the ranks by the trainer."""
    tensor_parallel: list[str] = field(default_factory=list)
    """The projections split over the tp ranks."""
    kept_fp32: list[str] = field(default_factory=list)
    """Modules and parameters computed in fp32 under a lower param_dtype (parallel.fp32_modules)."""


def generic_flops_per_token(model: nn.Module, config) -> Callable[[int], float]:
    """6 x non-embedding parameters + 12 L H T attention, for models without a package formula."""
    embed = model.get_input_embeddings()
    tied = embed.weight is model.get_output_embeddings().weight
    n = sum(p.numel() for p in model.parameters()) - (0 if tied else embed.weight.numel())
    layers, hidden = config.num_hidden_layers, config.hidden_size
    return lambda seq_len: 6 * n + 12 * layers * hidden * seq_len


def build_model(cfg: Config, spec: Optional[ModelSpec], hf_config, meshes: Meshes,
                device: torch.device, materialize: bool = True) -> BuiltModel:
    """materialize=False leaves the model sharded on the meta device (shardzoo plan)."""
    m, p = cfg.model, cfg.parallel

    if spec is not None:
        with torch.device("meta"):
            model = spec.build_model(hf_config)
        plan = spec.plan
        flops = lambda seq_len: spec.flops_per_token(hf_config, seq_len)  # noqa: E731
    else:
        # shardzoo plan wants shapes only: the meta device; training builds on the CPU.
        model = _build_auto_model(cfg, hf_config) if materialize else _build_auto_model_meta(cfg, hf_config)
        plan = None
        flops = generic_flops_per_token(model, hf_config)

    # Parallelize checklist: TP -> EP -> CP -> freeze -> the package's own step (ModelSpec.parallelize)
    # -> recompute -> compile -> FSDP.
    tensor_parallel = TensorParallelApplied([], [])
    if meshes.tp is not None:
        check_tensor_parallel(spec, hf_config, meshes.tp.size())
        tensor_parallel = apply_tensor_parallel(model, plan.tp, meshes.tp,
                                                getattr(text_config(hf_config), "num_key_value_heads", 0),
                                                p.tp_colwise, p.tp_rowwise)
    ep_patterns = p.ep_modules or list(plan.ep_modules if plan else [])
    expert_parallel = []
    if meshes.ep is not None:
        if not ep_patterns:
            raise ConfigError("parallel.ep_size > 1 but the model declares no expert modules; set "
                              "parallel.ep_modules (e.g. ['model.layers.{*}.mlp.experts']) or parallel.ep_size: 1")
        expert_parallel = apply_expert_parallel(model, ep_patterns, meshes.ep, p.ep_dispatcher)
    context_parallel = []
    if meshes.cp is not None:
        context_parallel = _apply_context_parallel(model, p.cp_modules or list(plan.cp_modules if plan else []),
                                                   meshes, hf_config)
    frozen = _freeze(model, m.freeze_modules) if m.freeze_modules else []
    customised = spec.parallelize(model, hf_config, meshes, cfg) if spec is not None and spec.parallelize else []
    recomputed = []
    if p.recompute or (p.recompute is None and p.recompute_modules):
        patterns = p.recompute_modules or list(plan.recompute_modules if plan else ["model.layers.{*}"])
        if p.use_reentrant and aux_loss_coef(getattr(model, "config", None)):
            # Reentrant checkpointing runs the first forward without autograd, so the router
            # probabilities the load-balancing loss reads from inside a block carry no gradient.
            raise ConfigError("parallel.use_reentrant: the model adds the router's load-balancing loss "
                              "(output_router_logits), whose gradient reentrant recompute cannot carry; set "
                              "parallel.use_reentrant: false (the default) or turn recompute off")
        recomputed = apply_recompute(model, patterns, p.use_reentrant)
    fsdp_patterns = p.fsdp_modules or list(plan.fsdp_modules if plan else ["model.layers.{*}"])
    # After recompute (the compiled graph contains the checkpointed forward), before FSDP (whose hooks
    # around each unit stay in eager).
    compiled = apply_compile(model, p.compile_modules or fsdp_patterns) if p.compile else []
    fp32 = _fp32_parts(model, p, plan)
    task = task_class(spec).from_config(model, cfg, hf_config)
    if meshes.tp is not None:
        task.loss_copies *= meshes.tp.size()  # the tp ranks of a group compute the same loss
    units = apply_fsdp(task, model, meshes.dense, dataclasses.replace(p, fsdp_modules=fsdp_patterns),
                       expert_mesh=meshes.ep_fsdp, expert_patterns=p.ep_fsdp_modules or ep_patterns,
                       root_casts_inputs=task.casts_inputs, token_local_mesh=meshes.world,
                       token_local=tensor_parallel.token_local, fp32=fp32)

    if spec is not None and materialize:
        task.to_empty(device="cpu" if p.offload_to_cpu else device)
        if m.train_from_scratch:
            init_parameters(model, cfg.training.seed, spec.init_fn(hf_config))
        else:
            path = resolve_path(m.model_name_or_path)
            load_parameters(model, spec.adapter.from_hf(iter_safetensors(path, lazy=True), hf_config), str(path))
        if p.offload_to_cpu and torch.device(device).type != "cpu":
            move_unsharded(task, torch.device(device))
    replicated = [q for _, module in (match_modules(model, p.ignored_modules, "parallel.ignored_modules")
                                      if p.ignored_modules else []) for q in module.parameters() if q.requires_grad]
    # By name: materializing replaced the meta parameters FSDP does not manage.
    replicated += [q for q in (model.get_parameter(n) for n, _ in fp32.params) if q.requires_grad]
    return BuiltModel(model, task, spec, hf_config, units, recomputed, expert_parallel, context_parallel, frozen,
                      flops, compiled, customised, replicated, tensor_parallel.split,
                      [n for n, _ in fp32.modules + fp32.params])


def _fp32_parts(model: nn.Module, p, plan) -> Fp32Parts:
    """What stays fp32: parallel.fp32_modules as given (in an fp32 run too: the same units and replicated
    parameters, which the tests compare exactly), else the package's list under a lower param_dtype."""
    own = p.fp32_modules is None
    if own and to_dtype(p.param_dtype) == torch.float32:
        return Fp32Parts([], [])
    patterns = list(plan.fp32_modules if plan and own else p.fp32_modules or [])
    parts = find_fp32_parts(model, patterns, "parallel.fp32_modules", allow_unmatched=own)
    if parts.params and p.tp_size > 1:
        # Kept out of FSDP, their gradient is summed by the trainer over every rank: under TP that sum
        # depends on how each parameter is split (as for parallel.ignored_modules).
        names = [n for n, _ in parts.params][:3]
        raise ConfigError(f"parallel.fp32_modules: bare parameters ({', '.join(names)}, ...) cannot stay fp32 under "
                          f"parallel.tp_size={p.tp_size} in this version; list only modules in parallel.fp32_modules "
                          f"(e.g. {[n for n, _ in parts.modules][:2]}), [] for none, or set tp_size: 1")
    return parts


def check_tensor_parallel(spec: Optional[ModelSpec], hf_config, tp_size: int) -> None:
    """ConfigError unless the model can be split over tp_size ranks (before any process group exists)."""
    if spec is None or not spec.plan.tp.supported:
        what = f"model package {spec.name!r}" if spec else "the transformers AutoModel path"
        raise ConfigError(f"parallel.tp_size={tp_size}: {what} has no tensor-parallel plan (ParallelPlan.tp); use a "
                          "package that has one (qwen3, tiny_lm) or parallel.tp_size: 1")
    where = f"{type(hf_config).__name__} (config.json)"
    hf_config = text_config(hf_config)  # a vision-language model's language model
    heads = hf_config.num_attention_heads
    check_heads(heads, getattr(hf_config, "num_key_value_heads", None) or heads, tp_size, where, "tp_size",
                "tensor parallel")
    # What the plans split besides heads: the vocabulary, the (dense or FFN) columns.
    counts = {key: getattr(hf_config, key) for key in ("vocab_size", "intermediate_size", "ffn_dim")
              if getattr(hf_config, key, None)}
    check_tp_split(tp_size, where, **counts)


def _freeze(model: nn.Module, patterns: list[str]) -> list[str]:
    """Parameters of the matched modules stop requiring gradients (before FSDP, which keeps the flag)."""
    names = []
    for name, module in match_modules(model, patterns, "model.freeze_modules"):
        for param in module.parameters():
            param.requires_grad_(False)
        names.append(name)
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError(f"model.freeze_modules: {patterns} freeze every parameter; leave something to train")
    return names


def _apply_context_parallel(model: nn.Module, patterns: list[str], meshes: Meshes, hf_config) -> list[str]:
    cp_size = meshes.cp.size()
    if not patterns:
        raise ConfigError(f"parallel.cp_size={cp_size}: {type(model).__name__} declares no attention kernels to wrap "
                          "(ParallelPlan.cp_modules, modules of type shardzoo.ops.CoreAttention); the AutoModel path "
                          "has none. Use a model package with context parallel support, or parallel.cp_size: 1")
    # From the config, so a bad cp_size fails while building rather than in the first forward
    # (the wrapped kernels check the heads they get on every call too).
    if hasattr(hf_config, "num_attention_heads"):
        check_heads(hf_config.num_attention_heads,
                    getattr(hf_config, "num_key_value_heads", None) or hf_config.num_attention_heads, cp_size,
                    f"{type(model).__name__} (num_attention_heads/num_key_value_heads in its config)")
    return apply_context_parallel(model, patterns, meshes.cp)


def _build_auto_model_meta(cfg: Config, hf_config) -> nn.Module:
    """The AutoModel path's model on the meta device: its parameters' shapes and dtypes, no memory."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(hf_config, dtype=torch.float32,
                                                 trust_remote_code=cfg.model.trust_remote_code)
    if not hasattr(model, "get_decoder") or model.get_output_embeddings() is None:
        raise ConfigError(f"model: {type(model).__name__} has no decoder/output head to train as a causal LM")
    return model


def _build_auto_model(cfg: Config, hf_config) -> nn.Module:
    """Path one: any HF causal LM, built in fp32 on the CPU (every rank builds the same model from
    the seed; FSDP then keeps each rank's shard). Registered packages avoid the full CPU copy."""
    from transformers import AutoModelForCausalLM

    m = cfg.model
    if m.train_from_scratch:
        torch.manual_seed(cfg.training.seed)
        model = AutoModelForCausalLM.from_config(hf_config, dtype=torch.float32,
                                                 trust_remote_code=m.trust_remote_code)
    else:
        model = AutoModelForCausalLM.from_pretrained(str(resolve_path(m.model_name_or_path)), config=hf_config,
                                                     dtype=torch.float32, trust_remote_code=m.trust_remote_code)
    if not hasattr(model, "get_decoder") or model.get_output_embeddings() is None:
        raise ConfigError(f"model: {type(model).__name__} has no decoder/output head to train as a causal LM")
    return model
