"""The sequence split of context parallel: each cp rank keeps one contiguous slice of every row.

Done after collate, on whole rows, so everything that depends on the whole row is already right:
targets were shifted before the split (the token after a slice's last position is in the next
slice), position ids count from the row's (or the document's) start, and document ids, which
attention needs for the whole sequence, are kept whole. Counts (targets, tokens) become this
rank's, so the summed counts over all ranks stay the global ones the loss is normalised by.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import torch

from ..ops import IGNORE_INDEX

if TYPE_CHECKING:
    from .loader import Batch


def split_sequence(batch: "Batch", cp_rank: int, cp_size: int) -> "Batch":
    """Slice cp_rank of cp_size of a collated batch whose length divides by cp_size (collate's
    pad_to_multiple_of)."""
    length = batch.input_ids.shape[1]
    assert length % cp_size == 0 and batch.token_mask is not None, "collate pads to cp_size and sets token_mask"
    chunk = length // cp_size

    def mine(t: torch.Tensor) -> torch.Tensor:
        return t[:, cp_rank * chunk:(cp_rank + 1) * chunk].clone()

    positions = batch.position_ids
    if positions is None:  # unpacked rows: 0..T-1, and the slice must keep counting from the row start
        positions = torch.arange(length).expand_as(batch.input_ids)
    targets, token_mask = mine(batch.targets), mine(batch.token_mask)
    weights = None if batch.loss_weights is None else mine(batch.loss_weights)
    return dataclasses.replace(batch, input_ids=mine(batch.input_ids), targets=targets, position_ids=mine(positions),
                               token_mask=token_mask, num_targets=int((targets != IGNORE_INDEX).sum()),
                               num_tokens=int(token_mask.sum()), loss_weights=weights, cp_size=cp_size)
