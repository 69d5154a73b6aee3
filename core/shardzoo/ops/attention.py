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

import contextlib
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..device import CPU, CUDA, compute_capability
from .dispatch import Op


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


@attention.register("sdpa", devices=(CPU, CUDA), priority=10)
def attention_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = True,
                   sliding_window: Optional[int] = None, document_ids: Optional[torch.Tensor] = None,
                   scale: Optional[float] = None, sinks: Optional[torch.Tensor] = None) -> torch.Tensor:
    """torch SDPA; the fused is_causal path when there is no window and no documents. On CUDA the
    trainer runs it inside `fastest_sdpa`, so cuDNN leads on Hopper."""
    qt, kt, vt = (x.transpose(1, 2) for x in (q, k, v))
    gqa = k.shape[2] != q.shape[2]
    if sinks is not None:
        return _sdpa_with_sinks(qt, kt, vt, causal, sliding_window, document_ids, scale, sinks).transpose(1, 2)
    if sliding_window is None and document_ids is None:
        out = F.scaled_dot_product_attention(qt, kt, vt, is_causal=causal, scale=scale, enable_gqa=gqa)
    else:
        mask = attention_mask(q.shape[1], k.shape[1], q.device, causal, sliding_window, document_ids)
        out = F.scaled_dot_product_attention(qt, kt, vt, attn_mask=mask, scale=scale, enable_gqa=gqa)
    return out.transpose(1, 2)


def fastest_sdpa(device_type: str):
    """A context in which SDPA tries the fastest CUDA kernels first: cuDNN (on Hopper and later,
    where it leads), then flash, then memory-efficient, math last. Elsewhere it changes nothing."""
    if device_type != CUDA:
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    order = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
    if compute_capability(device_type) >= (9, 0):
        order.insert(0, SDPBackend.CUDNN_ATTENTION)
    return sdpa_kernel(order, set_priority=True)


def _sdpa_with_sinks(qt, kt, vt, causal, sliding_window, document_ids, scale, sinks):
    """The sink as one extra key with a zero key and value vector: its logit q.0 = 0 plus an additive
    mask of sink[h] gives exactly the sink column, and its zero value adds nothing to the output."""
    b, hq, t, d = qt.shape
    s = kt.shape[2]
    kt = torch.cat([kt, kt.new_zeros(b, kt.shape[1], 1, d)], dim=2)
    vt = torch.cat([vt, vt.new_zeros(b, vt.shape[1], 1, vt.shape[-1])], dim=2)
    mask = attention_mask(t, s, qt.device, causal, sliding_window, document_ids)
    bias = torch.zeros(b, hq, t, s, dtype=qt.dtype, device=qt.device)
    if mask is not None:
        bias = bias.masked_fill(~mask, float("-inf"))
    bias = torch.cat([bias, sinks.to(qt.dtype).view(1, hq, 1, 1).expand(b, hq, t, 1)], dim=-1)
    return F.scaled_dot_product_attention(qt, kt, vt, attn_mask=bias, scale=scale, enable_gqa=kt.shape[1] != hq)
