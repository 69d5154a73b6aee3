"""The pieces tensor parallel (parallel/tensor.py) hangs on modules: hooks that move the residual stream
between its sequence split and the whole sequence, and styles for what torch's Colwise/Rowwise do not
cover (kv heads fewer than tp ranks; parameters a rank uses on its own tokens or heads)."""

from __future__ import annotations

import torch.nn as nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import DTensor, Partial, Replicate, Shard, distribute_tensor
from torch.distributed.tensor.parallel import ParallelStyle

from ..moe.routing_stats import narrow_routing
from ..ops.rms_norm import rms_norm_split_width


def distribute_params(module: nn.Module, mesh: DeviceMesh, placement, names=None) -> None:
    """Replace the module's own parameters (all, or `names`) by DTensors on `mesh` with `placement`, each rank
    cutting its part locally (src_data_rank=None: the model is on the meta device or built from one seed)."""
    for name in names or [n for n, _ in module.named_parameters(recurse=False)]:
        param = getattr(module, name)
        shards = distribute_tensor(param.data, mesh, [placement], src_data_rank=None)
        module.register_parameter(name, nn.Parameter(shards, requires_grad=param.requires_grad))


class LocalParams(ParallelStyle):
    """A module whose parameters every tp rank holds whole (a norm, a modulation table, a patch embedding)
    and uses on its own share: its tokens (a DTensor input split on dim 1, handed back split the same
    way) or its heads (a plain input). It computes on plain tensors, so any kernel its ops are bound to
    runs (fused NPU/CUDA norms know nothing of DTensor). `partial`: each rank's gradient is its part of
    the sum over the ranks (marked Partial, summed by FSDP); False: every rank computes the same
    gradient (a copy)."""

    def __init__(self, partial: bool = True):
        super().__init__()
        self.partial = partial

    def _apply(self, module: nn.Module, device_mesh: DeviceMesh) -> nn.Module:
        distribute_params(module, device_mesh, Replicate())
        forward, grad_placements = module.forward, [Partial() if self.partial else Replicate()]

        def local_forward(x, *args, **kwargs):
            split = isinstance(x, DTensor)
            if split:
                spec = (x.device_mesh, x.placements, x.shape, x.stride())
                x = x.to_local()
            held = dict(module._parameters)
            try:
                for name, param in held.items():
                    if isinstance(param, DTensor):
                        module._parameters[name] = param.to_local(grad_placements=grad_placements)
                out = forward(x, *args, **kwargs)
            finally:
                module._parameters.update(held)
            if split:
                mesh, placements, shape, stride = spec
                out = DTensor.from_local(out, mesh, placements, run_check=False, shape=shape, stride=stride)
            return out
        module.forward = local_forward
        return module


class SplitWidthNorm(ParallelStyle):
    """An RMSNorm over all heads (weight [heads x head_dim]) of a column-parallel projection's output: each
    rank holds its heads' columns of the weight and the statistic is summed over the ranks."""

    def _apply(self, module: nn.Module, device_mesh: DeviceMesh) -> nn.Module:
        distribute_params(module, device_mesh, Shard(0), ["weight"])
        group = device_mesh.get_group()
        module.forward = lambda x: rms_norm_split_width(x, module.weight.to_local(), module.eps, group,
                                                        module.weight_in_fp32)
        return module


def split_inputs_embeds(mesh: DeviceMesh):
    """The whole embedded sequence, the same on every tp rank, enters the residual stream's split; the
    backward gathers the gradient, so every rank's image features get all of theirs."""
    def hook(_, args, kwargs):
        x = kwargs.get("inputs_embeds")
        if x is not None and not isinstance(x, DTensor):
            kwargs["inputs_embeds"] = DTensor.from_local(x, mesh, [Replicate()], run_check=False).redistribute(
                placements=[Shard(1)])
        return args, kwargs
    return hook


def to_local_tokens(module, args, kwargs):
    x, *rest = args
    module._tp_input = (x.device_mesh, x.shape, x.stride())
    local = x.to_local()
    # DTensor's split of the sequence (dim 1): chunks of ceil(T / tp), the last ones shorter or empty.
    mesh, length = x.device_mesh, x.shape[1]
    narrow_routing(min(mesh.get_local_rank() * -(-length // mesh.size()), length), local.shape[1])
    return (local, *rest), kwargs


def back_to_sequence_split(module, args, kwargs, out):
    mesh, shape, stride = module._tp_input
    del module._tp_input
    return DTensor.from_local(out, mesh, [Shard(1)], run_check=False, shape=shape, stride=stride)


class ReplicatedKVHeads(ParallelStyle):
    """A k or v projection with fewer heads than tp ranks: the weight whole on every rank, each rank keeping
    the head its query heads read (ranks r*kv/tp share head r*kv // tp). The ranks' gradients of the weight
    and input are partial (each from its own query heads) and DTensor sums them."""

    def __init__(self, kv_heads: int):
        super().__init__()
        self.kv_heads = kv_heads

    def _apply(self, module: nn.Module, device_mesh: DeviceMesh) -> nn.Module:
        distribute_params(module, device_mesh, Replicate())
        head = device_mesh.get_local_rank() * self.kv_heads // device_mesh.size()

        def keep_own_head(_, args, out):
            out = out.to_local(grad_placements=[Partial()])
            return out.unflatten(-1, (self.kv_heads, -1))[..., head, :]
        module.register_forward_pre_hook(_as_replicated(device_mesh))
        module.register_forward_hook(keep_own_head)
        return module


def _as_replicated(mesh: DeviceMesh):
    def hook(_, args):
        x, *rest = args
        if not isinstance(x, DTensor):
            x = DTensor.from_local(x, mesh, [Replicate()], run_check=False)
        return (x, *rest)
    return hook



def gather_sequence(mesh: DeviceMesh):
    """The block's input: the residual stream's sequence split, all-gathered (a DTensor, so the
    column-parallel projections' partial input gradients are summed by one reduce-scatter). A plain
    input is this rank's even share of the sequence (a model that splits its own tokens)."""
    def hook(_, args):
        x, *rest = args
        if not isinstance(x, DTensor):
            x = DTensor.from_local(x, mesh, [Shard(1)], run_check=False)
        return (x.redistribute(placements=[Replicate()]), *rest)
    return hook


def local_kernel_inputs(_, args, kwargs):
    """The attention kernel works on this rank's heads as plain tensors: per-head DTensor arguments
    (sinks) enter as their local shard (the gradient flows back to the shard)."""
    local = lambda t: t.to_local() if isinstance(t, DTensor) else t  # noqa: E731
    return tuple(local(a) for a in args), {k: local(v) for k, v in kwargs.items()}


