"""Activation recompute of pattern-selected modules.

The module's forward is wrapped in place (no wrapper module), so parameter names, and with them
checkpoints and FSDP patterns, are unchanged. Applied before FSDP, as the parallelize order says.
"""

from __future__ import annotations

import functools

import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from .patterns import match_modules


def _recomputed(forward, use_reentrant: bool):
    @functools.wraps(forward)
    def run(*args, **kwargs):
        if use_reentrant and kwargs:
            # Reentrant checkpoint only sees positional tensors; bind the rest so they reach forward.
            return checkpoint(functools.partial(forward, **kwargs), *args, use_reentrant=True)
        return checkpoint(forward, *args, use_reentrant=use_reentrant, **kwargs)
    return run


def apply_recompute(model: nn.Module, patterns: list[str], use_reentrant: bool = False) -> list[str]:
    names = []
    for name, module in match_modules(model, patterns, "parallel.recompute_modules"):
        module.forward = _recomputed(module.forward, use_reentrant)
        names.append(name)
    return names
