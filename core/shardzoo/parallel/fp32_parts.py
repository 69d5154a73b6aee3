"""Modules and parameters kept in fp32 under a lower param_dtype (transformers' and diffusers'
`_keep_in_fp32_modules`: Wan's time embedding, affine norms and modulation tables).

FSDP2 casts a unit's parameters to one dtype, so what stays fp32 must sit outside the lower-precision
units: a module becomes an FSDP unit of its own whose policy gathers it in fp32 (its inputs cast up, its
output left in fp32, as the reference model computes); a bare parameter of a larger module (a
modulation table) is kept out of FSDP, whole on every rank in fp32, its gradient summed over the
ranks by the trainer as parallel.ignored_modules' are.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable

import torch.nn as nn

from ..errors import ConfigError
from .patterns import pattern_to_regex


@dataclasses.dataclass
class Fp32Parts:
    modules: list[tuple[str, nn.Module]]
    params: list[tuple[str, nn.Parameter]]


def find_fp32_parts(model: nn.Module, patterns: Iterable[str], key: str, allow_unmatched: bool = False) -> Fp32Parts:
    """What `patterns` name: modules with parameters (module names) and bare parameters (parameter
    names). A pattern naming nothing is an error naming `key` unless `allow_unmatched` (a package's
    list covers variants: Wan's cross-attention norm exists only with cross_attn_norm)."""
    patterns = list(patterns)
    regexes = [pattern_to_regex(p) for p in patterns]
    hits = [False] * len(patterns)
    modules, params = [], []
    for name, module in model.named_modules():
        matched = [i for i, rx in enumerate(regexes) if rx.match(name)]
        if matched and any(True for _ in module.parameters()):
            modules.append((name, module))
            hits = [h or i in matched for i, h in enumerate(hits)]
    inside = {id(q) for _, m in modules for q in m.parameters()}
    for name, param in model.named_parameters():
        matched = [i for i, rx in enumerate(regexes) if rx.match(name)]
        if matched:
            hits = [h or i in matched for i, h in enumerate(hits)]
            if id(param) not in inside:
                params.append((name, param))
    missing = [p for p, hit in zip(patterns, hits) if not hit]
    if missing and not allow_unmatched:
        raise ConfigError(f"{key}: pattern(s) {missing} match no module with parameters and no parameter of "
                          f"{type(model).__name__}; e.g. {', '.join(n for n, _ in list(model.named_parameters())[:4])}")
    return Fp32Parts(modules, params)
