"""The `attention` op through torch's scaled_dot_product_attention (CPU and CUDA), and the context that
orders SDPA's CUDA kernels fastest first."""

from __future__ import annotations

import contextlib
from typing import Optional

import torch
import torch.nn.functional as F

from ...device import CPU, CUDA, compute_capability
from .masks import attention_mask
from .reference import attention


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
