"""FLOPs of one training step, counted by running it under torch's FlopCounterMode.

Counting what runs (rather than a per-family formula) serves every model alike: vision towers,
cross-attention, MoE with only the routed experts. torch's counter knows matmuls; the attention
kernels (CPU and CUDA), torch._grouped_mm and the in-place addmm_ are counted here, so a CPU step,
a MoE step and the chunked cross-entropy are not undercounted. Attention has formulas of its own
because torch 2.11's reject grouped-query shapes (fewer key/value heads than query heads, as in every
Qwen3 and GPT-OSS step); 2.13's accept them and count as ours do. Attention is counted at full T x T,
causal or not (the PaLM / torchtitan convention), and its backward includes the score recompute, as
torch counts it.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

aten = torch.ops.aten


def _attention_shapes(query, key, value) -> tuple[int, int, int, int, int]:
    """(batch x query heads, query length, key length, q/k head dim, v head dim) of [B, H, S, D] operands;
    each group of query heads shares one key/value head, so the work is per query head."""
    (b, heads, s_q, d), (_, kv_heads, s_k, _), d_v = query, key, value[3]
    if heads % kv_heads:
        raise ValueError(f"attention with {heads} query heads and {kv_heads} key/value heads is not counted")
    return b * heads, s_q, s_k, d, d_v


def _attention(query, key, value, *args, out_shape=None, **kwargs) -> int:
    """The scores q k^T and the output p v."""
    bh, s_q, s_k, d, d_v = _attention_shapes(query, key, value)
    return 2 * bh * s_q * s_k * (d + d_v)


def _attention_backward(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    """The scores again (d), dP = dO v^T and dV = P^T dO (d_v each), dQ = dS k and dK = dS^T q (d each)."""
    bh, s_q, s_k, d, d_v = _attention_shapes(query, key, value)
    return 2 * bh * s_q * s_k * (3 * d + 2 * d_v)


def _addmm_(bias, a, b, *args, out_shape=None, **kwargs) -> int:
    return 2 * a[0] * a[1] * b[1]


def _grouped_mm(a, b, offs=None, *args, out_shape=None, **kwargs) -> int:
    """2 x the multiply-adds of every group. The ragged dimension (split by `offs`) is whole in one
    of the operands, so the total is the dense product of the full shapes, divided nowhere."""
    if len(a) == 2 and len(b) == 3:  # [M, K] x [G, K, N]: tokens split by group
        return 2 * a[0] * a[1] * b[2]
    if len(a) == 3 and len(b) == 3:  # [G, M, K] x [G, K, N]: batched
        return 2 * a[0] * a[1] * a[2] * b[2]
    if len(a) == 2 and len(b) == 2:  # [M, Ktot] x [Ktot, N]: the contraction split by group
        return 2 * a[0] * a[1] * b[1]
    if len(a) == 3 and len(b) == 2:  # [G, M, K] x [K, Ntot]: the output columns split by group
        return 2 * a[1] * a[2] * b[1]
    raise ValueError(f"torch._grouped_mm with operand shapes {a} and {b} is not counted")


EXTRA_FORMULAS = {
    aten.addmm_: _addmm_,  # in-place accumulation (the chunked cross-entropy's weight gradient)
    **{kernel: _attention for kernel in (
        aten._scaled_dot_product_flash_attention_for_cpu, aten._scaled_dot_product_flash_attention,
        aten._scaled_dot_product_efficient_attention, aten._scaled_dot_product_cudnn_attention)},
    **{kernel: _attention_backward for kernel in (
        aten._scaled_dot_product_flash_attention_for_cpu_backward, aten._scaled_dot_product_flash_attention_backward,
        aten._scaled_dot_product_efficient_attention_backward, aten._scaled_dot_product_cudnn_attention_backward)},
    aten._grouped_mm: _grouped_mm,
}


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of everything `fn` runs (call it with the forward and backward inside)."""
    counter = FlopCounterMode(display=False, custom_mapping=EXTRA_FORMULAS)
    with counter:
        fn()
    return int(counter.get_total_flops())
