"""AdamW with weight decay on weight matrices only (norm weights, sinks and biases, including the
[experts, features] expert biases, are not decayed).

Parameter groups are also split by sharding (mesh, placements), because the foreach kernels of a
group cannot mix DTensors of different meshes (experts vs the rest under expert parallelism).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..config import TrainingConfig
from .sharding_groups import by_sharding


def build_optimizer(model: nn.Module, t: TrainingConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 and not name.endswith("bias") else no_decay).append(p)
    groups = [{"params": params, "weight_decay": wd}
              for members, wd in ((decay, t.weight_decay), (no_decay, 0.0)) for params in by_sharding(members)]
    return torch.optim.AdamW(groups, lr=t.lr, betas=(t.adam_beta1, t.adam_beta2), eps=t.adam_epsilon)
