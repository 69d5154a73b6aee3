"""Who may attend to whom: packed documents, causality and sliding windows as one visibility rule,
which every attention backend turns into its own mask form (boolean, BlockMask, sparse mode)."""

from __future__ import annotations

from typing import Optional

import torch


def document_ids_from_position_ids(position_ids: torch.Tensor) -> torch.Tensor:
    """[B, T] positions restarting at 0 per document -> [B, T] document index."""
    return torch.cumsum((position_ids == 0).to(torch.int32), dim=-1)


def document_ids_from_cu_seqlens(cu_seqlens: torch.Tensor, total: int) -> torch.Tensor:
    """Cumulative lengths [n_docs + 1] of a packed row of `total` tokens -> [1, total] document index."""
    lengths = cu_seqlens[1:] - cu_seqlens[:-1]
    ids = torch.repeat_interleave(torch.arange(len(lengths), device=cu_seqlens.device), lengths)
    if ids.numel() != total:
        raise ValueError(f"cu_seqlens covers {ids.numel()} tokens but the row has {total}")
    return ids[None]


def visible(q_pos: torch.Tensor, k_pos: torch.Tensor, causal: bool, sliding_window: Optional[int]) -> torch.Tensor:
    """Whether key position k_pos is visible to query position q_pos (positions in the key sequence;
    broadcasting index tensors): the one rule behind every mask backend builds."""
    keep = k_pos >= 0
    if causal:
        keep = keep & (k_pos <= q_pos)
    if sliding_window is not None:
        keep = keep & (k_pos > q_pos - sliding_window)
    return keep


def attention_mask(q_len: int, k_len: int, device: torch.device, causal: bool,
                   sliding_window: Optional[int], document_ids: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """Boolean mask, True = attend: [q, k] or [B, 1, q, k] with documents; None if all may attend."""
    if not causal and sliding_window is None and document_ids is None:
        return None
    qi = torch.arange(q_len, device=device)[:, None] + (k_len - q_len)
    kj = torch.arange(k_len, device=device)[None, :]
    mask = visible(qi, kj, causal, sliding_window)
    if document_ids is not None:
        same_doc = document_ids[:, -q_len:, None] == document_ids[:, None, :]
        mask = (mask & same_doc)[:, None]
    return mask
