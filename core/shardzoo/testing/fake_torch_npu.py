"""A pure-torch stand-in for torch_npu, following docs/npu_ops.md §5, so the NPU backends'
call patterns, argument checks and autograd can be tested without an NPU. Each op implements the
documented semantics and rejects what the documented op rejects (dtypes, shapes, broadcast forms,
limits); ops without a registered derivative return outputs without autograd, as the real ones
do. Passing through it is not NPU validation: kernels, numerics and performance need hardware.

Install in a test with `install(monkeypatch)`: it puts the module in sys.modules as torch_npu;
`without=("npu_clipped_swiglu",)` models an older torch_npu that lacks an op, `attention_sink=False`
one whose npu_fusion_attention has no `sink` argument.
"""

from __future__ import annotations

import sys
import types
from typing import Optional

import torch

_GMM_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
_FLOATS = (torch.float16, torch.bfloat16, torch.float32)
_HALF = (torch.float16, torch.bfloat16)


def npu_rms_norm(self: torch.Tensor, gamma: torch.Tensor, epsilon: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """(y, rstd): y = x * rstd * gamma, normalised over gamma's dims, scaled in fp32 and rounded once
    to x's dtype; rstd fp32 with gamma's dims kept as 1 (not differentiable)."""
    if not 2 <= self.dim() <= 8:
        raise ValueError(f"npu_rms_norm: x must have 2 to 8 dims, got {self.dim()}")
    same = gamma.dtype == self.dtype and self.dtype in _FLOATS
    if not (same or gamma.dtype == torch.float32 and self.dtype in _HALF):
        raise TypeError(f"npu_rms_norm: unsupported dtypes x {self.dtype}, gamma {gamma.dtype}")
    if gamma.dim() > self.dim() or tuple(self.shape[self.dim() - gamma.dim():]) != tuple(gamma.shape):
        raise ValueError(f"npu_rms_norm: gamma {tuple(gamma.shape)} is not the trailing dims of x {tuple(self.shape)}")
    dims = tuple(range(-gamma.dim(), 0))
    x = self.float()
    rstd = torch.rsqrt(x.pow(2).mean(dims, keepdim=True) + epsilon)
    return (x * rstd * gamma.float()).to(self.dtype), rstd.detach()


def _rotate(x: torch.Tensor, mode: str) -> torch.Tensor:
    if mode == "half":
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat((-x2, x1), dim=-1)
    pairs = x.unflatten(-1, (-1, 2))
    return torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)


def npu_rotary_mul(self: torch.Tensor, r1: torch.Tensor, r2: torch.Tensor, rotary_mode: str = "half",
                   rotate: Optional[torch.Tensor] = None) -> torch.Tensor:
    """x * cos + rotate(x) * sin with full head_dim tables; modelled for the BSND layout (4-D x)."""
    if rotate is not None:
        raise ValueError("fake npu_rotary_mul: the `rotate` argument is not modelled")
    if rotary_mode not in ("half", "interleave"):
        raise ValueError(f"npu_rotary_mul: rotary_mode must be half or interleave, got {rotary_mode!r}")
    if self.dim() != 4:
        raise ValueError("fake npu_rotary_mul: only 4-D BSND input is modelled")
    if self.dtype not in _FLOATS or r1.dtype != self.dtype or r2.dtype != self.dtype:
        raise TypeError(f"npu_rotary_mul: x, r1, r2 must share one of fp16/bf16/fp32, got {self.dtype}, "
                        f"{r1.dtype}, {r2.dtype}")
    b, s, n, d = self.shape
    if d % 2 or d >= 896 or b >= 1000 or n >= 1000:
        raise ValueError(f"npu_rotary_mul: needs an even D < 896 and B, N < 1000, got {tuple(self.shape)}")
    allowed = {(1, s, 1, d)} if rotary_mode == "interleave" else {(1, s, 1, d), (b, s, 1, d), (b, s, n, d)}
    for name, table in (("r1", r1), ("r2", r2)):
        if tuple(table.shape) not in allowed:
            raise ValueError(f"npu_rotary_mul: {name} {tuple(table.shape)} is not a {rotary_mode}-mode broadcast "
                             f"form of BSND {tuple(self.shape)} ({sorted(allowed)})")
        if table.requires_grad and b * n > 1024:
            raise ValueError("npu_rotary_mul: tables that need gradients require B * N <= 1024")
        if bool((table.detach().abs() > 1).any()):
            raise ValueError(f"npu_rotary_mul: {name} values must lie in [-1, 1]")
    return self * r1 + _rotate(self, rotary_mode) * r2


def npu_swiglu(self: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """SiLU of the first half along `dim` times the second half."""
    if not 1 <= self.dim() <= 8 or self.dtype not in _FLOATS:
        raise TypeError(f"npu_swiglu: needs 1 to 8 dims of fp16/bf16/fp32, got {self.dim()} dims of {self.dtype}")
    if self.shape[dim] % 2:
        raise ValueError(f"npu_swiglu: the split dim has odd size {self.shape[dim]}")
    if not self.is_contiguous():
        raise ValueError("npu_swiglu: the input must be contiguous")
    a, b = self.chunk(2, dim=dim)
    return torch.nn.functional.silu(a) * b


def npu_clipped_swiglu(x: torch.Tensor, *, group_index: Optional[torch.Tensor] = None, dim: int = -1,
                       alpha: float = 1.702, limit: float = 7.0, bias: float = 1.0,
                       interleaved: bool = True) -> torch.Tensor:
    """GPT-OSS's activation; no derivative is registered, so the output carries no autograd."""
    if x.dtype not in _FLOATS:
        raise TypeError(f"npu_clipped_swiglu: unsupported dtype {x.dtype}")
    if x.shape[dim] % 2:
        raise ValueError(f"npu_clipped_swiglu: the split dim has odd size {x.shape[dim]}")
    if dim not in (-1, x.dim() - 1):
        raise ValueError("fake npu_clipped_swiglu: only the last dim is modelled")
    with torch.no_grad():
        rows = x if group_index is None else x[: int(group_index.sum())]
        a, b = (rows[..., ::2], rows[..., 1::2]) if interleaved else rows.chunk(2, dim=-1)
        a, b = a.clamp(max=limit), b.clamp(min=-limit, max=limit)
        return a * torch.sigmoid(alpha * a) * (b + bias)


def _counts(group_list: torch.Tensor, group_list_type: int) -> list[int]:
    if not isinstance(group_list, torch.Tensor) or group_list.dtype != torch.int64:
        raise TypeError("npu_grouped_matmul: group_list must be an int64 Tensor")
    if group_list_type == 1:
        return group_list.tolist()
    if group_list_type == 0:
        cumsum = group_list.tolist()
        if any(b < a for a, b in zip(cumsum, cumsum[1:])):
            raise ValueError("npu_grouped_matmul: group_list_type 0 needs a non-decreasing cumsum")
        return [c - p for c, p in zip(cumsum, [0] + cumsum[:-1])]
    raise ValueError(f"npu_grouped_matmul: group_list_type {group_list_type} is not supported here")


def npu_grouped_matmul(x: list[torch.Tensor], weight: list[torch.Tensor], *, bias=None, group_list=None,
                       split_item: int = 0, group_type: Optional[int] = None, group_list_type: int = 0,
                       **unused) -> list[torch.Tensor]:
    if len(x) != 1 or len(weight) != 1:
        raise ValueError("fake npu_grouped_matmul: only the single-tensor MoE pattern is modelled")
    a, w = x[0], weight[0]
    if a.dtype not in _GMM_DTYPES or w.dtype != a.dtype:
        raise TypeError(f"npu_grouped_matmul: unsupported dtypes x {a.dtype}, weight {w.dtype}")
    if a.dim() != 2 or w.dim() != 3 and group_type == 0:
        raise ValueError("npu_grouped_matmul: split_item 2/3 needs a 2-D x and a 3-D [E, K, N] weight")
    if a.shape[-1] >= 65536 or w.shape[-1] >= 65536:
        raise ValueError("npu_grouped_matmul: the last dim of x and weight must be < 65536")
    counts = _counts(group_list, group_list_type)
    if group_type == 0 and split_item in (2, 3):  # M-axis groups: rows of x per expert
        if sum(counts) != a.shape[0] or len(counts) != w.shape[0]:
            raise ValueError("npu_grouped_matmul: group_list does not cover x's rows / weight's groups")
        parts = torch.split(a, counts)
        return [torch.cat([p @ w[g] for g, p in enumerate(parts)])]
    if group_type == 2 and split_item in (2, 3):  # K-axis groups: x [K, M] and weight [M, N] split on M
        if sum(counts) != a.shape[1] or w.shape[0] != a.shape[1]:
            raise ValueError("npu_grouped_matmul: group_list does not cover the K axis")
        a_parts, w_parts = torch.split(a, counts, dim=1), torch.split(w, counts, dim=0)
        return [torch.stack([ap @ wp for ap, wp in zip(a_parts, w_parts)])]
    raise ValueError(f"npu_grouped_matmul: group_type {group_type} with split_item {split_item} is not modelled")


def npu_moe_token_permute(tokens: torch.Tensor, indices: torch.Tensor, num_out_tokens: Optional[int] = None,
                          padded_mode: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    if padded_mode:
        raise ValueError("npu_moe_token_permute: padded_mode=True is not supported")
    if tokens.dim() != 2 or indices.dtype not in (torch.int32, torch.int64):
        raise TypeError("npu_moe_token_permute: tokens must be [T, H] and indices int32/int64")
    top_k = indices.shape[1] if indices.dim() == 2 else 1
    order = torch.argsort(indices.reshape(-1), stable=True)
    sorted_indices = torch.argsort(order).to(torch.int32)
    return tokens.index_select(0, order // top_k), sorted_indices


def npu_moe_token_unpermute(permuted_tokens: torch.Tensor, sorted_indices: torch.Tensor,
                            probs: Optional[torch.Tensor] = None, padded_mode: bool = False,
                            restore_shape=None) -> torch.Tensor:
    if padded_mode:
        raise ValueError("npu_moe_token_unpermute: padded_mode=True is not supported")
    if probs is None:
        return permuted_tokens.index_select(0, sorted_indices.long())
    tokens, top_k = probs.shape
    copies = permuted_tokens.index_select(0, sorted_indices.long()).view(tokens, top_k, -1)
    return (copies * probs.unsqueeze(-1)).sum(1)


_LAYOUTS = ("BSH", "SBH", "BSND", "BNSD", "TND")
_UNSET = 2147483647
COMPRESSED_MASK_SIZE = 2048


def _to_bnsd(x: torch.Tensor, layout: str) -> torch.Tensor:
    return x.transpose(1, 2) if layout == "BSND" else x


def _from_bnsd(x: torch.Tensor, layout: str) -> torch.Tensor:
    return x.transpose(1, 2) if layout == "BSND" else x


def _sparse_discard(sq: int, skv: int, sparse_mode: int, atten_mask: Optional[torch.Tensor], pre: int, nxt: int,
                    device) -> Optional[torch.Tensor]:
    """The positions each sparse_mode discards (True = masked out), [.., sq, skv]. The band of
    mode 0 is top-left aligned, modes 3 and 4 bottom-right (torch_npu's own tests build the band
    as triu(k=next+1) + tril(k=-pre-1), shifted by skv - sq for the right-down modes)."""
    if atten_mask is None:
        return None  # the sparse parameters are ignored without a mask: full attention
    if atten_mask.dtype not in (torch.bool, torch.uint8):
        raise TypeError(f"npu_fusion_attention: atten_mask must be bool or uint8, got {atten_mask.dtype}")
    ones = torch.ones(sq, skv, dtype=torch.bool, device=device)
    if sparse_mode in (2, 3, 4):
        size = COMPRESSED_MASK_SIZE
        expected = torch.triu(torch.ones(size, size, dtype=torch.bool, device=device), 1)
        if tuple(atten_mask.shape) != (size, size) or not torch.equal(atten_mask.bool(), expected):
            raise ValueError(f"npu_fusion_attention: sparse_mode {sparse_mode} takes the compressed "
                             f"triu(ones({size}, {size}), 1) mask, got shape {tuple(atten_mask.shape)}")
        shift = skv - sq if sparse_mode in (3, 4) else 0
        if sparse_mode in (2, 3):
            return torch.triu(ones, 1 + shift)
        return torch.triu(ones, nxt + 1 + shift) | torch.tril(ones, -pre - 1 + shift)
    if sparse_mode == 0:
        band = torch.triu(ones, nxt + 1) | torch.tril(ones, -pre - 1) if (pre, nxt) != (_UNSET, _UNSET) \
            else torch.zeros_like(ones)
        return atten_mask.bool() | band
    if sparse_mode == 1:
        return atten_mask.bool().expand(*atten_mask.shape[:-2], sq, skv)
    raise ValueError(f"fake npu_fusion_attention: sparse_mode {sparse_mode} is not modelled")


def _attend(q, k, v, scale, discard, sink):
    """BNSD explicit attention in fp32 -> (out in q's dtype, row max, row sum of exp) over every
    column the softmax sees (the sink's included)."""
    n, nkv = q.shape[1], k.shape[1]
    scores = q.float() @ k.float().repeat_interleave(n // nkv, dim=1).transpose(-1, -2) * scale
    if discard is not None:
        scores = scores.masked_fill(discard, float("-inf"))
    if sink is not None:
        scores = torch.cat([scores, sink.view(1, n, 1, 1).expand(*scores.shape[:-1], 1)], dim=-1)
    row_max = scores.amax(-1, keepdim=True)
    exp = torch.exp(scores - row_max)
    row_sum = exp.sum(-1, keepdim=True)
    probs = (exp / row_sum)[..., :k.shape[2]]
    out = probs @ v.float().repeat_interleave(n // nkv, dim=1)
    return out.to(q.dtype), row_max.detach(), row_sum.detach()


def npu_fusion_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, head_num: int,
                         input_layout: str, pse: Optional[torch.Tensor] = None,
                         padding_mask: Optional[torch.Tensor] = None, atten_mask: Optional[torch.Tensor] = None,
                         scale: float = 1.0, keep_prob: float = 1.0, pre_tockens: int = _UNSET,
                         next_tockens: int = _UNSET, inner_precise: int = 0, prefix=None, actual_seq_qlen=None,
                         actual_seq_kvlen=None, sparse_mode: int = 0, gen_mask_parallel: bool = True,
                         sync: bool = False, softmax_layout: str = "", sink: Optional[torch.Tensor] = None):
    """Dropout(Softmax(Mask(scale * Q K^T, atten_mask))) @ V with the documented layouts, GQA,
    sparse modes 0-4, varlen TND and the per-head `sink` (7.3.0). Returns the 7 documented values:
    out, softmax_max and softmax_sum (fp32, [B, N, S, 8]; [T, N, 8] for TND), a reserved tensor,
    seed, offset, mask length. Gradients reach q, k, v and sink (the registered derivative)."""
    if input_layout not in _LAYOUTS:
        raise ValueError(f"npu_fusion_attention: input_layout must be one of {', '.join(_LAYOUTS)}, "
                         f"got {input_layout!r}")
    if input_layout in ("BSH", "SBH"):
        raise ValueError(f"fake npu_fusion_attention: layout {input_layout} is not modelled")
    if query.dtype not in _FLOATS or key.dtype != query.dtype or value.dtype != query.dtype:
        raise TypeError(f"npu_fusion_attention: q, k, v must share one of fp16/bf16/fp32, got {query.dtype}, "
                        f"{key.dtype}, {value.dtype}")
    if key.shape != value.shape:
        raise ValueError(f"npu_fusion_attention: key {tuple(key.shape)} and value {tuple(value.shape)} must match")
    if pse is not None or padding_mask is not None or prefix is not None or keep_prob != 1.0:
        raise ValueError("fake npu_fusion_attention: pse, padding_mask, prefix and dropout are not modelled")
    heads = query.shape[-2] if input_layout in ("BSND", "TND") else query.shape[1]
    kv_heads = key.shape[-2] if input_layout in ("BSND", "TND") else key.shape[1]
    if head_num != heads or heads % kv_heads or heads > 256:
        raise ValueError(f"npu_fusion_attention: head_num {head_num} must equal the query's {heads} heads, "
                         f"a multiple of the {kv_heads} key/value heads, at most 256")
    if query.shape[-1] != key.shape[-1] or query.shape[-1] > 768:
        raise ValueError(f"npu_fusion_attention: needs Dq = Dk <= 768, got {query.shape[-1]}, {key.shape[-1]}")
    if sink is not None and (sink.dtype != torch.float32 or tuple(sink.shape) != (head_num,)):
        raise TypeError(f"npu_fusion_attention: sink must be fp32 [head_num], got {sink.dtype} {tuple(sink.shape)}")
    if softmax_layout not in ("", "TND") or softmax_layout == "TND" and input_layout != "TND":
        raise ValueError("npu_fusion_attention: softmax_layout='TND' needs TND input")

    if input_layout != "TND":
        if actual_seq_qlen is not None or actual_seq_kvlen is not None:
            raise ValueError("fake npu_fusion_attention: actual_seq_* outside TND is not modelled")
        q, k, v = (_to_bnsd(x, input_layout) for x in (query, key, value))
        discard = _sparse_discard(q.shape[2], k.shape[2], sparse_mode, atten_mask, pre_tockens, next_tockens,
                                  q.device)
        out, row_max, row_sum = _attend(q, k, v, scale, discard, sink)
        stats = (row_max.expand(*row_max.shape[:-1], 8), row_sum.expand(*row_sum.shape[:-1], 8))
        return (_from_bnsd(out, input_layout), *stats, query.new_empty(0), 0, 0, 0)

    ends_q, ends_kv = _cumulative(actual_seq_qlen, query.shape[0], "q"), _cumulative(actual_seq_kvlen, key.shape[0],
                                                                                     "kv")
    if len(ends_q) != len(ends_kv):
        raise ValueError("npu_fusion_attention: actual_seq_qlen and actual_seq_kvlen must have equal lengths")
    if atten_mask is not None and atten_mask.dim() != 2:
        raise ValueError("npu_fusion_attention: varlen (TND) takes a 2-D atten_mask only")
    outs, maxes, sums = [], [], []
    for (q0, q1), (k0, k1) in zip(zip([0] + ends_q[:-1], ends_q), zip([0] + ends_kv[:-1], ends_kv)):
        if q1 == q0:
            continue
        q, k, v = (x[a:b].transpose(0, 1)[None] for x, a, b in ((query, q0, q1), (key, k0, k1), (value, k0, k1)))
        discard = _sparse_discard(q1 - q0, k1 - k0, sparse_mode, atten_mask, pre_tockens, next_tockens, q.device)
        if discard is not None and bool(discard.all(-1).any()):
            raise ValueError("npu_fusion_attention: varlen rows may not be fully masked")
        out, row_max, row_sum = _attend(q, k, v, scale, discard, sink)
        outs.append(out[0].transpose(0, 1))
        maxes.append(row_max[0].transpose(0, 1))
        sums.append(row_sum[0].transpose(0, 1))
    stats = [torch.cat(x).expand(-1, -1, 8) for x in (maxes, sums)]
    return (torch.cat(outs), *stats, query.new_empty(0), 0, 0, 0)


def _cumulative(lengths, total: int, name: str) -> list[int]:
    if lengths is None:
        raise ValueError(f"npu_fusion_attention: TND needs actual_seq_{name}len (cumulative host ints)")
    if isinstance(lengths, torch.Tensor) or not all(isinstance(x, int) for x in lengths):
        raise TypeError(f"npu_fusion_attention: actual_seq_{name}len must be a list of host ints")
    ends = list(lengths)
    if any(b < a for a, b in zip([0] + ends, ends)) or ends[-1] != total:
        raise ValueError(f"npu_fusion_attention: actual_seq_{name}len must be cumulative and end at T={total}, "
                         f"got {ends}")
    return ends


def _without_sink(fn):
    """npu_fusion_attention as before TorchNPU 7.3.0: no `sink` argument."""
    def npu_fusion_attention(query, key, value, head_num, input_layout, pse=None, padding_mask=None, atten_mask=None,
                             scale=1.0, keep_prob=1.0, pre_tockens=_UNSET, next_tockens=_UNSET, inner_precise=0,
                             prefix=None, actual_seq_qlen=None, actual_seq_kvlen=None, sparse_mode=0,
                             gen_mask_parallel=True, sync=False, softmax_layout=""):
        return fn(query, key, value, head_num, input_layout, pse, padding_mask, atten_mask, scale, keep_prob,
                  pre_tockens, next_tockens, inner_precise, prefix, actual_seq_qlen, actual_seq_kvlen, sparse_mode,
                  gen_mask_parallel, sync, softmax_layout)
    return npu_fusion_attention


OPS = (npu_rms_norm, npu_rotary_mul, npu_swiglu, npu_clipped_swiglu, npu_grouped_matmul, npu_moe_token_permute,
       npu_moe_token_unpermute, npu_fusion_attention)


def install(monkeypatch, without: tuple[str, ...] = (), attention_sink: bool = True) -> types.ModuleType:
    """`attention_sink=False` models TorchNPU before 7.3.0, whose npu_fusion_attention has no `sink`."""
    module = types.ModuleType("torch_npu")
    for fn in OPS:
        if fn.__name__ not in without:
            setattr(module, fn.__name__, fn)
    if not attention_sink and hasattr(module, "npu_fusion_attention"):
        module.npu_fusion_attention = _without_sink(npu_fusion_attention)
    monkeypatch.setitem(sys.modules, "torch_npu", module)
    return module
