"""Context parallel, Ulysses style: the sequence is split over the `cp` ranks everywhere except
inside attention, where an all-to-all trades the sequence split for a head split.

Each rank of a cp group holds T/cp consecutive tokens of the same rows (the collate step splits
them, data/context_split.py). Embeddings, norms, projections, rope, MLP/MoE and the loss are
token-wise, so they run on the local tokens unchanged. Around the attention kernel:

    q, k, v  [B, T/cp, H, D]  --all-to-all-->  [B, T, H/cp, D]   (every token, this rank's heads)
    attention over the whole sequence (causal, sliding window, documents: the usual full masks)
    out      [B, T, H/cp, D]  --all-to-all-->  [B, T/cp, H, D]

q, k and v travel in one all-to-all. Rank r gets query heads r*H/cp .. (r+1)*H/cp - 1 and the key/
value heads they read under GQA: kv heads fewer than cp are first repeated cp/kv times (each
rank then holds one), so cp must divide the query heads and either divide or be a multiple of
the kv heads. Per-head parameters passed to the kernel (attention sinks) are cut to the rank's
chunk. The backward of each all-to-all is the reverse all-to-all, and every parameter gradient
on a rank is that rank's share of the global loss's gradient: FSDP's sum over the ranks (cp ranks
are data-parallel ranks to FSDP) gives the full gradient.

Applied from outside the model: the plan names the attention-kernel modules
(shardzoo.ops.CoreAttention, e.g. model.layers.{*}.self_attn.core_attention) and their forward is
wrapped in place, so module and parameter names do not change.

Language models get their sequence split by the data loader. A model that makes its tokens itself
(a video DiT patchifies latents) marks where they become a sequence with a SequenceShard: without
context parallel it does nothing; apply_context_parallel makes its split() keep this rank's chunk
of the tokens (and of anything per token: rope tables, per-token modulation) and its gather() put
the chunks back together.
"""

from __future__ import annotations

import functools
from typing import Optional

import torch
import torch.nn as nn
from torch.distributed.device_mesh import DeviceMesh

from ..errors import ConfigError
from ..ops import CoreAttention
from .collectives import all_to_all, gather_sequence
from .patterns import match_modules


def check_heads(num_heads: int, num_kv_heads: int, cp_size: int, where: str = "the model",
                key: str = "cp_size", scheme: str = "Ulysses") -> None:
    """ConfigError unless these heads split over cp_size ranks (query heads evenly; key/value heads evenly,
    or replicated when fewer). `key`/`scheme`: the parallel key and its name (tensor parallel splits heads
    by the same rule)."""
    if num_heads % cp_size:
        raise ConfigError(f"parallel.{key}={cp_size}: {where} has {num_heads} attention heads, which do not split "
                          f"evenly over {cp_size} ranks ({scheme} gives each rank heads/{key} heads); use a {key} "
                          f"that divides {num_heads}")
    if num_kv_heads % cp_size and cp_size % num_kv_heads:
        raise ConfigError(f"parallel.{key}={cp_size}: {where} has {num_kv_heads} key/value heads; {scheme} needs "
                          f"{key} to divide them or be a multiple of them (then they are replicated); use a {key} "
                          f"that divides {num_kv_heads} or a multiple of it")


def seq_to_heads(x: torch.Tensor, cp_size: int, group) -> torch.Tensor:
    """[B, T/cp, cp * n, D] (head chunk r for rank r) -> [B, T, n, D] (the whole sequence, chunk of this rank)."""
    b, t, h, d = x.shape
    n = h // cp_size
    send = x.reshape(b, t, cp_size, n, d).permute(2, 0, 1, 3, 4).reshape(cp_size * b * t, n, d)
    recv = all_to_all(send, [b * t] * cp_size, [b * t] * cp_size, group)
    # Block j holds rank j's tokens, i.e. sequence chunk j.
    return recv.view(cp_size, b, t, n, d).permute(1, 0, 2, 3, 4).reshape(b, cp_size * t, n, d)


def heads_to_seq(x: torch.Tensor, cp_size: int, group) -> torch.Tensor:
    """The inverse of seq_to_heads: [B, T, n, D] -> [B, T/cp, cp * n, D]."""
    b, seq, n, d = x.shape
    t = seq // cp_size
    send = x.reshape(b, cp_size, t, n, d).permute(1, 0, 2, 3, 4).reshape(cp_size * b * t, n, d)
    recv = all_to_all(send, [b * t] * cp_size, [b * t] * cp_size, group)
    # Block i holds head chunk i of this rank's tokens.
    return recv.view(cp_size, b, t, n, d).permute(1, 2, 0, 3, 4).reshape(b, t, cp_size * n, d)


def _ulysses(forward, cp_size: int, cp_rank: int, group):
    @functools.wraps(forward)
    def run(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, sinks: Optional[torch.Tensor] = None,
            document_ids: Optional[torch.Tensor] = None, **kwargs) -> torch.Tensor:
        b, t, h, d = q.shape
        hkv = k.shape[2]
        check_heads(h, hkv, cp_size, "the attention kernel")
        if document_ids is not None and document_ids.shape[-1] != t * cp_size:
            raise ValueError(f"context parallel: document_ids cover {document_ids.shape[-1]} tokens but the sequence "
                             f"has {t} x {cp_size}; pass the whole row's document ids (the batch split keeps them)")
        if hkv < cp_size:
            k, v = (x.repeat_interleave(cp_size // hkv, dim=2) for x in (k, v))
        if v.shape[-1] != d:
            raise ValueError(f"context parallel: value head_dim {v.shape[-1]} differs from query head_dim {d}")
        nq, nkv = h // cp_size, k.shape[2] // cp_size
        # One exchange for q, k and v: chunk r of each, side by side, is what rank r receives.
        qkv = torch.cat([x.reshape(b, t, cp_size, -1, d) for x in (q, k, v)], dim=3)
        qkv = seq_to_heads(qkv.flatten(2, 3), cp_size, group)
        q, k, v = qkv.split([nq, nkv, nkv], dim=2)
        if sinks is not None:
            sinks = sinks.view(cp_size, nq)[cp_rank]
        out = forward(q, k, v, sinks=sinks, document_ids=document_ids, **kwargs)
        return heads_to_seq(out, cp_size, group)
    return run


class SequenceShard(nn.Module):
    """The point where a model's tokens become the sequence that context parallel splits (no parameters).
    Tensor parallel's sequence split (parallel/tensor.py) cuts each cp chunk further over the tp ranks."""

    def __init__(self):
        super().__init__()
        self.cp: Optional[tuple[int, int, object]] = None  # (size, rank, group) once parallelized
        self.tp: Optional[tuple[int, int, object]] = None

    def split(self, x: torch.Tensor, dim: int = 1, inside_attention: bool = False) -> torch.Tensor:
        """This rank's chunk of the tokens. `inside_attention`: a per-token tensor that attention reads (rope
        tables): tensor parallel gathers its ranks' tokens before attention, so only the cp split applies."""
        axes = ((self.cp, "cp_size"),) if inside_attention else ((self.cp, "cp_size"), (self.tp, "tp_size"))
        for axis, key in axes:
            if axis is None:
                continue
            size, rank, _ = axis
            if x.shape[dim] % size:
                raise ValueError(f"{key}={size}: {x.shape[dim]} tokens do not split evenly over {size} ranks; choose "
                                 f"a {key} that divides the token count (or change the input size)")
            x = x.chunk(size, dim=dim)[rank]
        return x

    def gather(self, x: torch.Tensor, dim: int = 1) -> torch.Tensor:
        for axis in (self.tp, self.cp):
            if axis is not None:
                x = gather_sequence(x, dim, axis[2])
        return x


def apply_context_parallel(model: nn.Module, patterns: list[str], cp_mesh: DeviceMesh) -> list[str]:
    """Wrap every matched attention kernel in the Ulysses exchange over `cp_mesh` (and arm the model's
    SequenceShard points, if it has any); returns the kernels' names."""
    found = match_modules(model, patterns, "parallel.cp_modules")
    wrong = [name for name, m in found if not isinstance(m, CoreAttention)]
    if wrong:
        raise ConfigError(f"parallel.cp_modules: {wrong[:3]} are not attention kernels (shardzoo.ops.CoreAttention); "
                          "point the patterns at the modules between the q/k/v projections and o_proj, e.g. "
                          "model.layers.{*}.self_attn.core_attention")
    cp_size, cp_rank, group = cp_mesh.size(), cp_mesh.get_local_rank(), cp_mesh.get_group()
    for _, module in found:
        module.forward = _ulysses(module.forward, cp_size, cp_rank, group)
    for module in model.modules():
        if isinstance(module, SequenceShard):
            module.cp = (cp_size, cp_rank, group)
    return [name for name, _ in found]
