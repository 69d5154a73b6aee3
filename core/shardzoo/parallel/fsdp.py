"""FSDP2 application: pattern-selected units, mixed precision, prefetch, offload, root last."""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Sequence

import torch
import torch.nn as nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import (
    CPUOffloadPolicy,
    FSDPModule,
    MixedPrecisionPolicy,
    OffloadPolicy,
    fully_shard,
    register_fsdp_forward_method,
)

from .expert import expert_fsdp_placement
from .fp32_parts import Fp32Parts
from .patterns import match_modules

_DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
           "fp16": torch.float16, "float16": torch.float16}


def to_dtype(name: str | None) -> torch.dtype | None:
    return None if name is None else _DTYPES[name]


def mixed_precision_policy(p: Any) -> MixedPrecisionPolicy:
    """`p`: the parallel section (its param_dtype, reduce_dtype, output_dtype, cast_forward_inputs)."""
    return MixedPrecisionPolicy(param_dtype=to_dtype(p.param_dtype), reduce_dtype=to_dtype(p.reduce_dtype),
                                output_dtype=to_dtype(p.output_dtype), cast_forward_inputs=p.cast_forward_inputs)


def apply_fsdp(root: nn.Module, model: nn.Module, mesh: DeviceMesh, p: Any,
               expert_mesh: Optional[DeviceMesh] = None, expert_patterns: Sequence[str] = (),
               root_casts_inputs: bool = True, token_local_mesh: Optional[DeviceMesh] = None,
               token_local: Sequence[str] = (), fp32: Optional[Fp32Parts] = None) -> list[str]:
    """Shard each module matched by fsdp_modules (innermost first), then `root` last.

    Under expert parallelism the modules matched by `expert_patterns` (already split over experts
    on the ep axis) become units of their own on `expert_mesh` (ep_fsdp), sharded on dim 1, before
    the blocks that contain them.

    `model` is what the patterns name (the HF-shaped model: `model.layers.{*}`); `root` is the
    module whose forward the trainer calls (the task wrapping `model`), so the remaining
    parameters (embeddings, final norm, head) are gathered by the root unit. Returns the names of
    the wrapped units in model order. `root_casts_inputs=False` keeps the root's floating inputs in
    their dtype (a task that forms its targets from them in fp32, e.g. flow matching, casts itself).
    `token_local`: module names (tensor parallel's blocks that run on each rank's own tokens) that become
    units on `token_local_mesh` (every rank), after the experts inside them.
    `fp32`: modules that become units gathered and computed in fp32 (before the units holding them),
    and bare parameters kept out of FSDP in fp32 (see fp32_parts.py).
    """
    ignored_params: set[nn.Parameter] = set()
    if p.ignored_modules:
        for _, module in match_modules(model, p.ignored_modules, "parallel.ignored_modules"):
            ignored_params.update(module.parameters())
            _compute_in_own_dtype(module)
    fp32 = fp32 or Fp32Parts([], [])
    ignored_params.update(q for _, q in fp32.params)
    # Pinned host memory speeds copies to an accelerator; a CPU run has none to copy to (and torch
    # refuses to pin without an accelerator).
    pin = p.pin_memory and mesh.device_type != "cpu"
    offload = CPUOffloadPolicy(pin_memory=pin) if p.offload_to_cpu else OffloadPolicy()
    common = dict(mesh=mesh, mp_policy=mixed_precision_policy(p), offload_policy=offload,
                  ignored_params=ignored_params or None)

    own_units = []  # units outside fsdp_modules: fp32 parts, experts, token-local blocks
    fp32_policy = MixedPrecisionPolicy(param_dtype=torch.float32, reduce_dtype=to_dtype(p.reduce_dtype),
                                       cast_forward_inputs=True)
    for _, module in sorted(fp32.modules, key=lambda nm: -nm[0].count(".")):  # children first
        fully_shard(module, reshard_after_forward=p.reshard_after_forward, **{**common, "mp_policy": fp32_policy})
        own_units.append(module)
    if expert_mesh is not None:
        for _, module in match_modules(model, expert_patterns, "parallel.ep_fsdp_modules"):
            fully_shard(module, shard_placement_fn=expert_fsdp_placement,
                        reshard_after_forward=p.reshard_after_forward, **{**common, "mesh": expert_mesh})
            own_units.append(module)
    for name in token_local:
        fully_shard(model.get_submodule(name), reshard_after_forward=p.reshard_after_forward,
                    **{**common, "mesh": token_local_mesh})
        own_units.append(model.get_submodule(name))
    units = [(n, m) for n, m in match_modules(model, p.fsdp_modules, "parallel.fsdp_modules")
             if any(q not in ignored_params for q in m.parameters())]
    groups = _tied_groups(model, units)
    # Children must be sharded before the units that contain them.
    for name, module in sorted(units, key=lambda nm: -nm[0].count(".")):
        group = groups.get(name)
        if group is None:
            fully_shard(module, reshard_after_forward=p.reshard_after_forward, **common)
        elif group[0] is module:  # a tied group is sharded once, through its first member
            fully_shard(group, reshard_after_forward=p.reshard_after_forward, **common)
        for method in getattr(module, "fsdp_forward_methods", ()):
            register_fsdp_forward_method(module, method)
    root_policy = common["mp_policy"] if root_casts_inputs else dataclasses.replace(common["mp_policy"],
                                                                                     cast_forward_inputs=False)
    fully_shard(root, reshard_after_forward=p.reshard_after_forward, **{**common, "mp_policy": root_policy})

    modules = [m for _, m in units]
    _set_prefetch(modules, p.num_to_forward_prefetch, p.num_to_backward_prefetch)
    # The loss is already divided by the global token count, so gradients must be summed, not
    # averaged, over the data-parallel ranks. Plain SUM also sidesteps PREMUL_SUM, which gloo and
    # HCCL do not implement.
    for module in [*own_units, *modules, root]:
        module.set_gradient_divide_factor(1.0)
        module.set_force_sum_reduction_for_comms(True)
    return [n for n, _ in units]


def _floating(value, fn):
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        return fn(value)
    if isinstance(value, (tuple, list)):
        return type(value)(_floating(v, fn) for v in value)
    if isinstance(value, dict):
        return {k: _floating(v, fn) for k, v in value.items()}
    return value


def _compute_in_own_dtype(module: nn.Module) -> None:
    """An ignored module keeps its parameters as they are (FSDP neither shards nor casts them), so under
    mixed precision its inputs come in param_dtype while its weights stay fp32. It computes in its own
    dtype and hands its outputs back in the dtype its first floating input had, so the modules around
    it see the run's precision."""
    own = next((q.dtype for q in module.parameters() if q.is_floating_point()), None)
    if own is None:
        return
    seen: list[torch.dtype] = []

    def before(_, args, kwargs):
        first = next((t for t in (*args, *kwargs.values()) if isinstance(t, torch.Tensor) and t.is_floating_point()),
                     None)
        seen.append(first.dtype if first is not None else own)
        cast = lambda t: t.to(own)  # noqa: E731
        return _floating(args, cast), _floating(kwargs, cast)

    def after(_, args, kwargs, output):
        dtype = seen.pop()
        return _floating(output, lambda t: t.to(dtype))

    module.register_forward_pre_hook(before, with_kwargs=True)
    module.register_forward_hook(after, with_kwargs=True)


def _tied_groups(model: nn.Module, units: list[tuple[str, nn.Module]]) -> dict[str, list[nn.Module]]:
    """Units that share a parameter with a module outside them (a tied embedding and head) become one
    FSDP group with the modules holding it: a parameter belongs to exactly one group, and every module
    that computes with it must gather it. unit name -> the group's modules."""
    holders: dict[int, list[nn.Module]] = {}
    for module in model.modules():
        for param in module.parameters(recurse=False):
            holders.setdefault(id(param), []).append(module)
    groups: dict[str, list[nn.Module]] = {}
    for name, unit in units:
        inside = {id(m) for m in unit.modules()}
        extra = {id(m): m for q in unit.parameters() for m in holders[id(q)] if id(m) not in inside}
        if extra:
            groups[name] = [unit, *extra.values()]
    # Both tied modules listed: the same group twice, kept as one member list.
    canonical: dict[frozenset, list[nn.Module]] = {}
    return {name: canonical.setdefault(frozenset(map(id, members)), members) for name, members in groups.items()}


def _set_prefetch(units: list[nn.Module], forward: int, backward: int) -> None:
    """Explicit prefetch: unit i all-gathers the next `forward` units' params in forward and the
    previous `backward` units' in backward (on top of FSDP2's implicit one-ahead prefetch)."""
    for i, unit in enumerate(units):
        assert isinstance(unit, FSDPModule)
        if forward:
            nxt = units[i + 1:i + 1 + forward]
            if nxt:
                unit.set_modules_to_forward_prefetch(nxt)
        if backward:
            prev = units[max(0, i - backward):i][::-1]
            if prev:
                unit.set_modules_to_backward_prefetch(prev)
