"""Expert parallelism: experts sharded over the `ep` mesh axis, tokens sent to them by all-to-all.

Layout (VeOmni's ep + ep_fsdp, torchtitan's EP as a DTensor plan): the world mesh is
(ep_fsdp, ep), ep ranks consecutive. Each expert weight [E, ...] becomes a DTensor Shard(0) on
`ep` (rank i of an ep group owns experts i*E/ep .. (i+1)*E/ep - 1); FSDP2 then shards it again
with Shard(1) over `ep_fsdp` (the replicas of the same experts), while every other parameter is
FSDP-sharded over all ranks. Gradients of an expert are complete on its ep rank (every token
routed to it arrives there), and FSDP sums them over ep_fsdp.

Token path of one MoE block (eager / fused dispatcher; fused uses the bound permute ops, e.g.
npu_moe_token_permute, eager the pure-torch permutation):
  1. tokens permuted by global expert id; per-expert counts [E] exchanged with all-to-all, so
     each rank learns how many rows every peer sends to each of its local experts;
  2. rows all-to-all'd (split sizes = counts summed per destination rank);
  3. received rows, ordered (source rank, local expert), regrouped by local expert for the GEMMs;
  4. the reverse of 3 and 2 after the experts.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import Shard, distribute_tensor

from ..errors import ConfigError
from ..moe.experts import GroupedExperts
from .collectives import all_to_all
from .patterns import match_modules


class AllToAllDispatch:
    """Sends each permuted row to the ep rank owning its expert and brings the results back."""

    def __init__(self, group, ep_size: int, num_experts: int, fused_permute: bool):
        self.group, self.ep_size = group, ep_size
        self.local_experts = num_experts // ep_size
        self.fused_permute = fused_permute

    def dispatch(self, rows: torch.Tensor, counts: torch.Tensor):
        send = counts.view(self.ep_size, self.local_experts)
        recv = torch.empty_like(send)
        dist.all_to_all_single(recv, send.contiguous(), group=self.group)
        # One host sync per block: the split sizes of the row exchange must be Python ints.
        in_splits = send.sum(1).tolist()
        out_splits = recv.sum(1).tolist()
        received = all_to_all(rows, out_splits, in_splits, self.group)
        # Rows arrive as (source rank, local expert) blocks; the grouped GEMM wants them by expert.
        expert_of_row = torch.repeat_interleave(
            torch.arange(self.local_experts, device=rows.device).repeat(self.ep_size), recv.reshape(-1),
            output_size=received.shape[0])
        order = torch.argsort(expert_of_row, stable=True)
        return received.index_select(0, order), recv.sum(0), (order, in_splits, out_splits)

    def combine(self, rows: torch.Tensor, state) -> torch.Tensor:
        order, in_splits, out_splits = state
        unsorted = torch.empty_like(rows).index_copy(0, order, rows)
        return all_to_all(unsorted, in_splits, out_splits, self.group)


def expert_modules(model: nn.Module, patterns: list[str], key: str) -> list[tuple[str, GroupedExperts]]:
    found = match_modules(model, patterns, key)
    wrong = [name for name, m in found if not isinstance(m, GroupedExperts)]
    if wrong:
        raise ConfigError(f"{key}: {wrong[:3]} are not routed-expert modules (shardzoo.moe.GroupedExperts); "
                          "point the patterns at the experts, e.g. model.layers.{*}.mlp.experts")
    return found


def apply_expert_parallel(model: nn.Module, patterns: list[str], ep_mesh: DeviceMesh, dispatcher: str) -> list[str]:
    """Shard every matched experts module over `ep_mesh` (Shard(0)) and route its tokens by all-to-all."""
    if dispatcher == "mc2":
        raise ConfigError("parallel.ep_dispatcher=mc2: the fused AlltoAllV+GroupedMatmul path needs Ascend A3 "
                          "(torch_npu.npu_alltoallv_gmm) and is not implemented in this version of shardzoo; "
                          "use ep_dispatcher: fused (or eager)")
    ep_size = ep_mesh.size()
    names = []
    for name, experts in expert_modules(model, patterns, "parallel.ep_modules"):
        if experts.num_experts % ep_size:
            raise ConfigError(f"parallel.ep_size={ep_size}: {name} has {experts.num_experts} experts, which do not "
                              f"divide into {ep_size} equal groups; choose an ep_size that divides "
                              f"{experts.num_experts}")
        for pname, param in list(experts.named_parameters(recurse=False)):
            # src_data_rank=None: split locally, no communication (the model is still on the meta device).
            sharded = nn.Parameter(distribute_tensor(param.data, ep_mesh, [Shard(0)], src_data_rank=None),
                                   requires_grad=param.requires_grad)
            experts.register_parameter(pname, sharded)
        experts.dispatcher = AllToAllDispatch(ep_mesh.get_group(), ep_size, experts.num_experts,
                                              fused_permute=dispatcher == "fused")
        names.append(name)
    return names


def expert_fsdp_placement(param: nn.Parameter) -> Optional[Shard]:
    """ep_fsdp shards expert weights on dim 1 (dim 0 is taken by ep)."""
    return Shard(1)
