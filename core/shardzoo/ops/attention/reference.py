"""Scaled dot-product attention for decoders: causal, GQA, optional sliding window, packed documents.

Layout is [batch, seq, heads, head_dim] for q, k, v and the output (the flash-attention / NPU TND
convention; the model never transposes). Key/value heads may be fewer than query heads (GQA):
query head j reads kv head j // (heads / kv_heads), as HF's repeat_kv does.

Packed rows carry several documents; `document_ids` [B, T] (equal ids = same document) keeps
attention inside a document. `document_ids_from_position_ids` derives them from position ids
that restart at 0 for every document, `document_ids_from_cu_seqlens` from cumulative lengths.
A sliding window of w lets query i see keys i - w < j <= i (HF's convention).

Attention sinks (GPT-OSS): one learned logit per query head joins every softmax as an extra
column with no value vector, so it only absorbs probability mass.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from ..dispatch import Op
from .masks import attention_mask


def attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = True,
                        sliding_window: Optional[int] = None, document_ids: Optional[torch.Tensor] = None,
                        scale: Optional[float] = None, sinks: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Explicit softmax attention in fp32; output in q's dtype."""
    b, t, hq, d = q.shape
    hkv = k.shape[2]
    scale = d ** -0.5 if scale is None else scale
    qf = q.float().transpose(1, 2)
    kf = k.float().transpose(1, 2).repeat_interleave(hq // hkv, dim=1)
    vf = v.float().transpose(1, 2).repeat_interleave(hq // hkv, dim=1)
    scores = qf @ kf.transpose(-1, -2) * scale
    mask = attention_mask(t, k.shape[1], q.device, causal, sliding_window, document_ids)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    if sinks is not None:
        sink_column = sinks.float().view(1, hq, 1, 1).expand(b, hq, t, 1)
        probs = torch.softmax(torch.cat([scores, sink_column], dim=-1), dim=-1)[..., :-1]
    else:
        probs = torch.softmax(scores, dim=-1)
    return (probs @ vf).transpose(1, 2).to(q.dtype)


attention = Op("attention", attention_reference)


@attention.set_example
def _example(tokens: int, dtype: torch.dtype):
    # Qwen3-1.7B's causal GQA: 16 query heads, 8 key/value heads of 128.
    q = torch.randn(1, tokens, 16, 128, dtype=dtype, requires_grad=True)
    k, v = (torch.randn(1, tokens, 8, 128, dtype=dtype, requires_grad=True) for _ in range(2))
    return (q, k, v), {"causal": True}


class CoreAttention(nn.Module):
    """`attention` as a (parameter-free) module, the part between the q/k/v projections and o_proj.

    Models call their attention through it so that parallelisms that must surround the kernel
    (Ulysses context parallel, parallel/context.py) can wrap it from outside the model.
    """

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **kwargs) -> torch.Tensor:
        return attention(q, k, v, **kwargs)
