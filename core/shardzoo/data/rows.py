"""Training rows: what one line of a batch holds, already shifted for next-token prediction.

A row is (input_ids, targets, position_ids): targets[i] is the token to predict after
input_ids[i] or IGNORE_INDEX. Three sources produce rows with the same interface
(`len(rows)`, `rows[i]`): SFT samples, packed SFT samples, and fixed-length pretraining sequences.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..ops import IGNORE_INDEX
from .token_store import TokenStore


@dataclass
class Row:
    input_ids: np.ndarray
    targets: np.ndarray
    position_ids: Optional[np.ndarray] = None
    """Positions restarting at 0 for every packed document; None = 0..len-1."""
    images: tuple[str, ...] = ()
    """Image files whose features fill the row's image tokens, in order."""


def sample_row(ids: np.ndarray, trained: np.ndarray) -> Row:
    """One SFT sample: the label of position i is token i+1 when that token is trained."""
    targets = np.full(len(ids), IGNORE_INDEX, dtype=np.int64)
    targets[:-1] = np.where(trained[1:], ids[1:], IGNORE_INDEX)
    return Row(ids.astype(np.int64), targets)


def packed_row(samples: list[Row]) -> Row:
    """Samples side by side; each keeps its own targets (its last token predicts nothing, so no
    loss crosses a boundary) and positions restart, which keeps attention inside each sample."""
    return Row(np.concatenate([s.input_ids for s in samples]), np.concatenate([s.targets for s in samples]),
               np.concatenate([np.arange(len(s.input_ids), dtype=np.int64) for s in samples]),
               tuple(path for s in samples for path in s.images))


class SampleRows:
    """SFT samples of several token stores, in the order of a mixed index ([N, 2] store, document)."""

    def __init__(self, stores: list[TokenStore], index: np.ndarray):
        self.stores, self.index = stores, index

    def __len__(self) -> int:
        return len(self.index)

    def lengths(self) -> np.ndarray:
        per_store = [s.lengths() for s in self.stores]
        return np.asarray([per_store[s][d] for s, d in self.index], dtype=np.int64)

    def __getitem__(self, i: int) -> Row:
        store, doc = self.index[i]
        ids, trained = self.stores[store].document(int(doc))
        row = sample_row(ids, trained)
        row.images = self.stores[store].document_images(int(doc))
        return row


class PackedRows:
    """Rows of several samples each (see packing.pack)."""

    def __init__(self, samples: SampleRows, packs: list[np.ndarray]):
        self.samples, self.packs = samples, packs

    def __len__(self) -> int:
        return len(self.packs)

    def __getitem__(self, i: int) -> Row:
        return packed_row([self.samples[int(j)] for j in self.packs[i]])


class SequenceRows:
    """Pretraining: the token stream cut into sequences of seq_len inputs. Sequence i reads tokens
    [i*L, i*L + L] (L + 1 tokens: the last one is only a target)."""

    def __init__(self, store: TokenStore, seq_len: int):
        self.store, self.seq_len = store, seq_len
        self.count = max(0, (store.num_tokens - 1) // seq_len)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> Row:
        if not 0 <= i < self.count:
            raise IndexError(i)
        tokens = self.store.tokens(i * self.seq_len, (i + 1) * self.seq_len + 1)
        return Row(tokens[:-1], tokens[1:])
