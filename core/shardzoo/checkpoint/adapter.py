"""State-dict adapter: HF checkpoint layout <-> our parameters, as data.

`ops` are converter operations (convert_ops.py) applied in order on import and inverted in
reverse order on export, so every layout the adapter reads it also writes back exactly. `skip`
are HF keys (regexes) the model deliberately lacks: dropped on import, absent from exports.
`tied_skip` are HF keys dropped on import and not exported when the config ties the word
embeddings (the head then shares the embedding parameter).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Iterator

import torch

from .convert_ops import ConvertOp


@dataclass(frozen=True)
class StateDictAdapter:
    ops: tuple[ConvertOp, ...] = ()
    skip: tuple[str, ...] = ()
    tied_skip: tuple[str, ...] = ()

    def _skipped(self, config) -> tuple[str, ...]:
        return self.skip + (self.tied_skip if getattr(config, "tie_word_embeddings", False) else ())

    def from_hf(self, items: Iterable[tuple[str, torch.Tensor]], config) -> Iterator[tuple[str, torch.Tensor]]:
        skip = self._skipped(config)
        stream = ((k, t) for k, t in items if not any(re.fullmatch(p, k) for p in skip))
        for op in self.ops:
            stream = op.from_hf(stream, config)
        return iter(stream)

    def to_hf(self, items: Iterable[tuple[str, torch.Tensor]], config) -> Iterator[tuple[str, torch.Tensor]]:
        stream = iter(items)
        for op in reversed(self.ops):
            stream = op.to_hf(stream, config)
        skip = self._skipped(config)
        return ((k, t) for k, t in stream if not any(re.fullmatch(p, k) for p in skip))
