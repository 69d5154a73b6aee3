"""Per-block torch.compile of pattern-selected modules (each decoder or DiT block compiled on its
own: one graph reused by every block, short compile times, FSDP's per-block hooks left outside)."""

from __future__ import annotations

import torch.nn as nn

from .patterns import match_modules


def apply_compile(model: nn.Module, patterns: list[str], **compile_kwargs) -> list[str]:
    names = []
    for name, module in match_modules(model, patterns, "parallel.compile_modules"):
        module.compile(**compile_kwargs)
        names.append(name)
    return names
