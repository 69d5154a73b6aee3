"""State-dict adapter: HF checkpoint names -> our parameter names, as data.

`renames` are (regex over HF names, replacement) pairs applied in order; `skip` are HF keys the
model deliberately lacks; `tied_skip` are HF keys dropped when the config ties the word
embeddings (the head then shares the embedding parameter). Layout converters (fused qkv,
stacked experts, interleaving) extend this class in the model packages that need them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Iterator

import torch


@dataclass(frozen=True)
class StateDictAdapter:
    renames: tuple[tuple[str, str], ...] = ()
    skip: tuple[str, ...] = ()
    tied_skip: tuple[str, ...] = ()

    def hf_to_ours(self, key: str) -> str:
        for pattern, repl in self.renames:
            key = re.sub(pattern, repl, key)
        return key

    def from_hf(self, items: Iterable[tuple[str, torch.Tensor]], config) -> Iterator[tuple[str, torch.Tensor]]:
        skip = self.skip + (self.tied_skip if getattr(config, "tie_word_embeddings", False) else ())
        for key, tensor in items:
            if not any(re.fullmatch(p, key) for p in skip):
                yield self.hf_to_ours(key), tensor
