"""AdamW with weight decay on matrices only (norm weights and biases are not decayed)."""

from __future__ import annotations

import torch
import torch.nn as nn

from ..config import TrainingConfig


def build_optimizer(model: nn.Module, t: TrainingConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": t.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=t.lr, betas=(t.adam_beta1, t.adam_beta2),
                             eps=t.adam_epsilon)
