"""The `attention` op on CUDA: SDPA's fused kernels where they apply, FlexAttention where they do not.

SDPA's flash / cuDNN kernels take plain causal or full attention, but a sliding window or packed
documents need an explicit mask, which sends SDPA to its slow kernels with a [T, T] mask in memory.
FlexAttention compiles the mask into a block-sparse kernel instead:
- sliding window, documents and causality become one `mask_mod` and a BlockMask (fully masked
  blocks are skipped, so a window of w costs O(T w), not O(T^2));
- sinks use the LSE identity out_sink = out * sigmoid(lse - sink[h]) (docs/model_facts.md,
  GPT-OSS), with FlexAttention's differentiable natural-log LSE.

FlexAttention is compiled once per process (an eager call is an unfused reference implementation,
and has no backward on CPU).
"""

from __future__ import annotations

import functools
from typing import Optional

import torch

from ...device import CUDA
from .masks import visible
from .reference import attention
from .sdpa import attention_sdpa


def flex_missing() -> Optional[str]:
    try:
        from torch.nn.attention.flex_attention import AuxRequest, flex_attention  # noqa: F401
    except ImportError:
        return f"torch {torch.__version__} has no FlexAttention with AuxRequest (torch >= 2.9)"
    return None


@attention.register("flex", devices=(CUDA,), priority=20, unavailable=flex_missing)
def attention_flex(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = True,
                   sliding_window: Optional[int] = None, document_ids: Optional[torch.Tensor] = None,
                   scale: Optional[float] = None, sinks: Optional[torch.Tensor] = None) -> torch.Tensor:
    """SDPA (its fastest kernel) for plain causal or full attention; FlexAttention for windows,
    documents and sinks."""
    if sliding_window is None and document_ids is None and sinks is None:
        return attention_sdpa(q, k, v, causal=causal, scale=scale)
    return flex_attention_masked(q, k, v, causal=causal, sliding_window=sliding_window,
                                 document_ids=document_ids, scale=scale, sinks=sinks)


def flex_attention_masked(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = True,
                          sliding_window: Optional[int] = None, document_ids: Optional[torch.Tensor] = None,
                          scale: Optional[float] = None, sinks: Optional[torch.Tensor] = None,
                          compiled: bool = True) -> torch.Tensor:
    """The reference's contract on FlexAttention; `compiled=False` runs it eagerly (forward only on
    CPU), which is how the CPU tests check the masks and the sink identity."""
    from torch.nn.attention.flex_attention import AuxRequest, flex_attention

    flex = _compiled_flex() if compiled else flex_attention
    qt, kt, vt = (x.transpose(1, 2) for x in (q, k, v))
    block_mask = _block_mask(causal, sliding_window, document_ids, q.shape[1], k.shape[1], q.device)
    kwargs = dict(block_mask=block_mask, scale=scale, enable_gqa=k.shape[2] != q.shape[2])
    if sinks is None:
        return flex(qt, kt, vt, **kwargs).transpose(1, 2)
    out, aux = flex(qt, kt, vt, return_aux=AuxRequest(lse=True), **kwargs)
    weight = torch.sigmoid(aux.lse - sinks.float().view(1, -1, 1)).unsqueeze(-1)
    return (out.float() * weight).to(q.dtype).transpose(1, 2)


@functools.lru_cache(maxsize=None)
def _compiled_flex():
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


def _block_mask(causal: bool, sliding_window: Optional[int], document_ids: Optional[torch.Tensor], q_len: int,
                k_len: int, device: torch.device):
    """The BlockMask of `attention_mask` (same bottom-right alignment), or None for full attention."""
    from torch.nn.attention.flex_attention import create_block_mask

    if not causal and sliding_window is None and document_ids is None:
        return None
    offset = k_len - q_len

    def mask_mod(b, h, q_idx, kv_idx):
        qi = q_idx + offset
        keep = visible(qi, kv_idx, causal, sliding_window)
        if document_ids is not None:
            keep = keep & (document_ids[b, qi] == document_ids[b, kv_idx])
        return keep

    batch = None if document_ids is None else document_ids.shape[0]
    return create_block_mask(mask_mod, batch, None, q_len, k_len, device=device)
