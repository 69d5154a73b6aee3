"""Model registry: model packages register a ModelSpec under the entry-point group `shardzoo.models`.

Core never imports a model package by name. Lookup order (as MindSpeed-MM's model hub): explicit
`model.model_id`, then config.json `architectures[0]` (a diffusers config.json names its class in
`_class_name` instead), then `model_type`; no match means the AutoModelForCausalLM path ("path one").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Callable, Optional, Union

import torch.nn as nn

from .checkpoint.adapter import StateDictAdapter
from .errors import ConfigError
from .parallel.materialize import InitFn
from .parallel.tensor import TensorParallelPlan

ENTRY_POINT_GROUP = "shardzoo.models"


@dataclass(frozen=True)
class ParallelPlan:
    """Which modules get what, as data (module patterns, see parallel/patterns.py)."""

    fsdp_modules: tuple[str, ...] = ("model.layers.{*}",)
    recompute_modules: tuple[str, ...] = ("model.layers.{*}",)
    ep_modules: tuple[str, ...] = ()
    cp_modules: tuple[str, ...] = ()
    """Attention kernels (shardzoo.ops.CoreAttention) that Ulysses context parallel wraps; empty = no CP."""
    tp: TensorParallelPlan = TensorParallelPlan()
    """Which modules tensor parallel splits how (parallel/tensor.py); the default (empty) = no TP."""
    fp32_modules: tuple[str, ...] = ()
    """Modules and bare parameters kept in fp32 under a lower param_dtype (the reference's
    `_keep_in_fp32_modules`; parallel/fp32_parts.py); patterns a config may lack are allowed."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    """The `model_id` users write."""
    config_class: type
    """transformers PretrainedConfig subclass this package serves."""
    architectures: tuple[str, ...]
    model_types: tuple[str, ...]
    build_model: Callable[[Any], nn.Module]
    """config -> model; called under torch.device('meta'), so it must not touch data."""
    init_fn: Callable[[Any], InitFn]
    """config -> per-parameter init for train_from_scratch."""
    flops_per_token: Callable[[Any, int], float]
    """(config, sequence length) -> training FLOPs per token (forward + backward), for MFU."""
    tiny_config: Callable[[], Any]
    adapter: StateDictAdapter = field(default_factory=StateDictAdapter)
    plan: ParallelPlan = field(default_factory=ParallelPlan)
    task: Union[str, type] = "causal_lm"
    """How a batch becomes a loss: a core task name (shardzoo.train.task.TASKS) or the package's own
    shardzoo.train.task.Task subclass (e.g. Wan's flow matching)."""
    config_from_dict: Optional[Callable[[dict], Any]] = None
    """config.json dict -> config object; None = config_class(**dict) (transformers configs)."""
    images: Optional[Callable[[Any, Any], Any]] = None
    """(config, DataConfig) -> shardzoo.data.images.ImageInputs for vision-language models: how a
    row's images become prompt tokens and pixel tensors. None: the model takes text only."""
    activation_bytes: Optional[Callable[[Any, Any, bool], int]] = None
    """(Config, model config, recompute) -> per-rank activation estimate for `shardzoo plan`; None =
    the causal-LM estimate (tokens from data.cutoff_len)."""
    parallelize: Optional[Callable[[nn.Module, Any, Any, Any], list[str]]] = None
    """(model, model config, Meshes, Config) -> names of what it changed: the package's own step of the
    parallelize checklist, for what the plan's module patterns cannot say (a module that needs a custom
    split, a buffer to re-place, a parameter to tie after sharding). Runs after expert and context
    parallel and the freezing, before recompute, compile and FSDP. None: the plan says everything."""
    packed_documents: bool = False
    """The decoder takes position_ids and document_ids and keeps attention inside each document, so
    packed data (data.packing) trains exactly as unpacked."""


def registered() -> dict[str, Any]:
    """model_id -> entry point, for every installed model package."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def load_spec(model_id: str) -> ModelSpec:
    eps = registered()
    if model_id not in eps:
        known = ", ".join(sorted(eps)) or "none installed"
        raise ConfigError(f"model.model_id: {model_id!r} is not a registered model package (registered: {known}); "
                          f"install shardzoo-{model_id} or remove model_id to use the AutoModel path")
    spec = eps[model_id].load()
    if not isinstance(spec, ModelSpec) or spec.name != model_id:
        raise TypeError(f"entry point {ENTRY_POINT_GROUP}:{model_id} must point at a ModelSpec named {model_id!r}, "
                        f"got {spec!r}")
    return spec


AUTO_MODEL = "auto"
"""`model.model_id: auto` takes transformers' AutoModelForCausalLM even where a package claims the
architecture (MindSpeed-LLM's path one), e.g. to compare against our rewrite."""


def find_spec(model_id: Optional[str], hf_config: dict) -> Optional[ModelSpec]:
    """The spec serving this model, or None for the AutoModel path. Two packages claiming the same
    architecture (or model_type) is an error that asks for model.model_id, never a silent pick."""
    if model_id == AUTO_MODEL:
        return None
    if model_id is not None:
        return load_spec(model_id)
    specs = [load_spec(name) for name in sorted(registered())]
    archs = hf_config.get("architectures") or ([hf_config["_class_name"]] if "_class_name" in hf_config else [])
    if archs:
        spec = _only(specs, lambda s: archs[0] in s.architectures, f"architecture {archs[0]!r}")
        if spec is not None:
            return spec
    model_type = hf_config.get("model_type")
    return _only(specs, lambda s: model_type in s.model_types, f"model_type {model_type!r}")


def _only(specs: list[ModelSpec], claims: Callable[[ModelSpec], bool], what: str) -> Optional[ModelSpec]:
    matches = [s for s in specs if claims(s)]
    if len(matches) > 1:
        names = ", ".join(s.name for s in matches)
        raise ConfigError(f"config.json's {what} is served by several model packages ({names}); set "
                          f"model.model_id to one of them, or give each package its own architectures / model_types")
    return matches[0] if matches else None
