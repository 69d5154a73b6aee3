"""Module-name patterns as in the MindSpeed configs.

`model.layers.{*}` any index, `model.layers.{0-23}` a range, `model.layers.{1,3,5}` a list,
`{0-3,8,10-11}` both; `*` inside a name component matches any characters. A leading `*.` matches
any number of leading components (MindSpeed-LLM's `*.q_proj` names every q_proj at any depth). A
pattern matches whole dotted module names only.
"""

from __future__ import annotations

import re
from typing import Iterable

import torch.nn as nn

from ..errors import ConfigError


def _brace_to_regex(body: str, pattern: str) -> str:
    if body == "*":
        return r"[^.]+"
    options = []
    for part in body.split(","):
        part = part.strip()
        if re.fullmatch(r"\d+-\d+", part):
            lo, hi = (int(x) for x in part.split("-"))
            if lo > hi:
                raise ConfigError(f"module pattern {pattern!r}: range {part} runs backwards")
            options.extend(str(i) for i in range(lo, hi + 1))
        elif re.fullmatch(r"\d+", part):
            options.append(part)
        else:
            raise ConfigError(f"module pattern {pattern!r}: {{{body}}} must be *, N, N-M or a comma list of those")
    return "(?:" + "|".join(options) + ")"


def pattern_to_regex(pattern: str) -> re.Pattern:
    out, pos = [], 0
    if pattern.startswith("*."):
        out.append(r"(?:[^.]+\.)+")
        pos = 2
    for m in re.compile(r"\{([^}]*)\}").finditer(pattern, pos):
        out.append(re.escape(pattern[pos:m.start()]).replace(r"\*", r"[^.]*"))
        out.append(_brace_to_regex(m.group(1), pattern))
        pos = m.end()
    out.append(re.escape(pattern[pos:]).replace(r"\*", r"[^.]*"))
    return re.compile("".join(out) + r"\Z")


def match_modules(model: nn.Module, patterns: Iterable[str], key: str,
                  allow_unmatched: bool = False) -> list[tuple[str, nn.Module]]:
    """(name, module) for every module matched by any pattern, in model order.

    A pattern that matches nothing is an error naming the config key: a typo must not silently
    leave the model unsharded or un-recomputed. `allow_unmatched`: for a package plan's patterns that
    cover variants (a dense MLP some configs do not have).
    """
    patterns = list(patterns)
    regexes = []
    for p in patterns:
        try:
            regexes.append(pattern_to_regex(p))
        except ConfigError as exc:
            raise ConfigError(f"{key}: {exc}") from None
    named = list(model.named_modules())
    hits = [False] * len(patterns)
    matched = []
    for name, module in named:
        found = False
        for i, rx in enumerate(regexes):
            if rx.match(name):
                hits[i] = True
                found = True
        if found:
            matched.append((name, module))
    missing = [p for p, hit in zip(patterns, hits) if not hit]
    if missing and not allow_unmatched:
        sample = ", ".join(n for n, _ in named[1:8])
        raise ConfigError(f"{key}: pattern(s) {missing} match no module of {type(model).__name__}; "
                         f"module names look like: {sample}, ...")
    return matched
