"""The `attention` op on Ascend: torch_npu.npu_fusion_attention (docs/npu_ops.md §5.2).

How the reference's arguments map onto the fused op:
- layout: BSND, our own [batch, seq, heads, head_dim], so nothing is transposed; BNSD is offered
  for callers that hold heads first. Packed documents go as varlen TND: the batch flattened to
  [tokens, heads, head_dim] with `actual_seq_qlen/kvlen` the cumulative document ends (host ints,
  so the document boundaries are read back from the device once per call).
- masks: the op's mask polarity is the opposite of SDPA's (True = discard) and its sparse modes take
  the fixed compressed triu(ones(2048, 2048), 1) mask whatever the sequence length. Causal is
  sparse_mode 3 (rightDownCausal: the bottom-right alignment of `attention_mask`, equal to mode 2
  when q and k have the same length). A sliding window of w (query i sees keys i - w < j <= i) is
  band mode 4 with pre_tockens = w - 1, next_tockens = 0: the band keeps i - pre <= j <= i + next,
  so the window's w keys include the query's own (torch_npu's tests build the band mask as
  triu(k=next+1) | tril(k=-pre-1)).
- sinks: the op's own `sink` argument (fp32 [heads]) where the installed torch_npu has it
  (TorchNPU 7.3.0 with CANN 8.5); before that, the documented LSE correction
  out_sink = out * sigmoid(lse - sink[h]), with lse = softmax_max + log(softmax_sum) from the op's
  statistics and an exact gradient through lse (`_LogSumExp`).
"""

from __future__ import annotations

import functools
import inspect
from typing import Optional

import torch

from ...device import NPU, torch_npu_op_missing
from .reference import attention

_UNBOUNDED = 2147483647
_MASK_SIZE = 2048
LAYOUTS = ("BSND", "BNSD")


@attention.register("npu_fusion_attention", devices=(NPU,), priority=10,
                    unavailable=torch_npu_op_missing("npu_fusion_attention"))
def attention_npu(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = True,
                  sliding_window: Optional[int] = None, document_ids: Optional[torch.Tensor] = None,
                  scale: Optional[float] = None, sinks: Optional[torch.Tensor] = None) -> torch.Tensor:
    return fusion_attention(q, k, v, causal=causal, sliding_window=sliding_window, document_ids=document_ids,
                            scale=scale, sinks=sinks)


def fusion_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = True,
                     sliding_window: Optional[int] = None, document_ids: Optional[torch.Tensor] = None,
                     scale: Optional[float] = None, sinks: Optional[torch.Tensor] = None,
                     layout: str = "BSND") -> torch.Tensor:
    """The reference's contract on npu_fusion_attention; `layout` says how q, k, v and the output
    are laid out when there are no documents (BSND = [B, S, N, D], BNSD = [B, N, S, D])."""
    if layout not in LAYOUTS:
        raise ValueError(f"fusion_attention: layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if layout == "BNSD":
        q, k, v = (x.transpose(1, 2) for x in (q, k, v))
        out = fusion_attention(q, k, v, causal=causal, sliding_window=sliding_window, document_ids=document_ids,
                               scale=scale, sinks=sinks)
        return out.transpose(1, 2)
    b, t, heads, d = q.shape
    call = dict(head_num=heads, scale=d ** -0.5 if scale is None else scale,
                **_sparse_arguments(causal, sliding_window, q.device))
    if document_ids is not None:
        if k.shape[1] != t:
            raise ValueError("attention with document_ids needs as many keys as queries per row")
        ends = _document_ends(document_ids)
        call.update(input_layout="TND", actual_seq_qlen=ends, actual_seq_kvlen=ends)
        q, k, v = (x.reshape(b * x.shape[1], *x.shape[2:]) for x in (q, k, v))
    else:
        call.update(input_layout="BSND")
    out = _with_sinks(q, k, v, sinks, call) if sinks is not None else _npu_attention(q, k, v, call)[0]
    return out.view(b, t, heads, v.shape[-1])


def _sparse_arguments(causal: bool, sliding_window: Optional[int], device: torch.device) -> dict:
    if sliding_window is not None:
        return dict(atten_mask=_compressed_mask(device), sparse_mode=4, pre_tockens=sliding_window - 1,
                    next_tockens=0 if causal else _UNBOUNDED)
    if causal:
        return dict(atten_mask=_compressed_mask(device), sparse_mode=3)
    return dict(atten_mask=None, sparse_mode=0)


@functools.lru_cache(maxsize=None)
def _compressed_mask(device: torch.device) -> torch.Tensor:
    return torch.triu(torch.ones(_MASK_SIZE, _MASK_SIZE, dtype=torch.bool, device=device), 1)


def _document_ends(document_ids: torch.Tensor) -> list[int]:
    """Cumulative ends of the documents of the flattened batch: a row's end always ends a document."""
    b, t = document_ids.shape
    change = torch.ones_like(document_ids, dtype=torch.bool)
    change[:, :-1] = document_ids[:, 1:] != document_ids[:, :-1]
    ends = torch.nonzero(change.reshape(-1)).flatten() + 1
    return ends.tolist()


def _npu_attention(q, k, v, call, **extra):
    import torch_npu

    return torch_npu.npu_fusion_attention(q, k, v, **call, **extra)


def _takes_sink() -> bool:
    import torch_npu

    return _has_sink_argument(torch_npu.npu_fusion_attention)


@functools.lru_cache(maxsize=None)
def _has_sink_argument(op) -> bool:
    """Whether this npu_fusion_attention has the `sink` argument (TorchNPU >= 7.3.0): from the
    registered operator schema, else from the Python signature."""
    try:
        schema = torch.ops.npu.npu_fusion_attention.default._schema
        return any(arg.name == "sink" for arg in schema.arguments)
    except (AttributeError, RuntimeError):
        return "sink" in inspect.signature(op).parameters


def _with_sinks(q, k, v, sinks, call):
    if _takes_sink():
        return _npu_attention(q, k, v, call, sink=sinks.float())[0]
    out, softmax_max, softmax_sum = _npu_attention(q, k, v, call)[:3]
    # Statistics are [B, N, S, 8] (TND: [T, N, 8]) with the value repeated along the last dim.
    stats = softmax_max[..., :1] + torch.log(softmax_sum[..., :1])
    if call["input_layout"] == "BSND":
        stats = stats.transpose(1, 2)  # -> [B, S, N, 1], like q
    lse = _LogSumExp.apply(q, k, stats, call)
    weight = torch.sigmoid(lse - sinks.float().view(-1, 1))
    return (out.float() * weight).to(q.dtype)


class _LogSumExp(torch.autograd.Function):
    """lse_i = log sum_j exp(s_ij), s = scale q k^T under the mask, from the op's statistics; the op
    does not differentiate them, so the backward is computed here. With p the softmax and c the
    incoming gradient: dq_i = c_i scale sum_j p_ij k_j, which is attention with k as the values, and
    dk_j = scale sum_i c_i p_ij q_i, which is that attention's value gradient for the output
    gradient c q. One extra attention call, forward and backward, yields both."""

    @staticmethod
    def forward(ctx, q, k, lse, call):
        ctx.save_for_backward(q, k)
        ctx.call = call
        return lse.clone()

    @staticmethod
    def backward(ctx, grad_lse):
        q, k = ctx.saved_tensors
        scale = ctx.call["scale"]
        with torch.enable_grad():
            keys_as_values = k.detach().requires_grad_()
            mean_key = _npu_attention(q.detach(), k.detach(), keys_as_values, ctx.call)[0]
            weight = (scale * grad_lse).to(q.dtype)
            (dk,) = torch.autograd.grad(mean_key, keys_as_values, grad_outputs=weight * q.detach())
        return weight * mean_key.detach(), dk, None, None

