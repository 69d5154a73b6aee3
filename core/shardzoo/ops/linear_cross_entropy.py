"""Language-model head + cross-entropy, normalised by a caller-given token count.

loss = sum over non-ignored tokens of w * CE(hidden @ weight.T, target) / normalizer

with w = 1 (the token mean) or per-token `token_weights` (e.g. InternVL 3.5's 1/sqrt(sample
tokens)); the default normalizer is then the sum of the weights.

The trainer passes the number of non-ignored tokens of the whole optimizer step (all
grad-accumulation micro-batches, all data-parallel ranks) as `normalizer`, so that summing the
micro-batch losses and the ranks' gradients gives the exact global token mean. Without a
normalizer the loss is this call's own token mean (HF's per-batch behaviour).

The `chunked` backend never holds more than `chunk_size` rows of fp32 logits: it computes the
loss and both gradients chunk by chunk in the forward (the gradient of the summed CE w.r.t. the
logits is softmax - onehot), keeps only grad_hidden [N, H] and grad_weight [V, H], and scales them
by grad_output in the backward. Same three matmuls as the unfused head, no [N, V] tensor saved.

Vocab-parallel (tensor parallel): with `vocab_group`, `weight` is this rank's block of V/size rows
(rank r holds rows r*V/size ..), every rank of the group passes the same hidden states and targets,
and each chunk's row max and (exp-sum, target logit) are all-reduced over the group (two small
all-reduces per chunk): the loss is the full-vocabulary one on every rank, grad_weight is exact for
the rank's rows, and grad_hidden is this rank's part of the sum over the vocabulary (the caller's
gather of the hidden states sums the parts in its backward).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F

from ..device import DEVICE_TYPES
from .dispatch import Op

IGNORE_INDEX = -100


def _normalizer(targets: torch.Tensor, normalizer: Optional[float | torch.Tensor], ignore_index: int,
                token_weights: Optional[torch.Tensor] = None) -> torch.Tensor | float:
    if normalizer is not None:
        return normalizer
    if token_weights is not None:
        return (token_weights * (targets != ignore_index)).sum().clamp(min=torch.finfo(torch.float32).tiny)
    return (targets != ignore_index).sum().clamp(min=1)


def linear_cross_entropy_reference(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, *,
                                   normalizer: Optional[float | torch.Tensor] = None, ignore_index: int = IGNORE_INDEX,
                                   chunk_size: int = 1024, token_weights: Optional[torch.Tensor] = None,
                                   vocab_group=None) -> torch.Tensor:
    """hidden [N, H], weight [V, H], targets [N] (token_weights [N]) -> scalar; full fp32 logits (the truth).
    With vocab_group the logits of every rank's rows are gathered (differentiably) first."""
    logits = (hidden @ weight.t()).float()
    if vocab_group is not None:
        from torch.distributed.nn.functional import all_gather

        logits = torch.cat(all_gather(logits, group=vocab_group), dim=-1)
    per_token = F.cross_entropy(logits, targets, ignore_index=ignore_index, reduction="none")
    if token_weights is not None:
        per_token = per_token * token_weights.float()
    return per_token.sum() / _normalizer(targets, normalizer, ignore_index, token_weights)


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, normalizer, ignore_index, chunk_size, token_weights, vocab_group):
        need_dh, need_dw = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        # This rank's vocab rows [first, first + V_local); all of them without a group.
        first = dist.get_rank(vocab_group) * weight.shape[0] if vocab_group is not None else 0
        grad_hidden = torch.empty_like(hidden) if need_dh else None
        # fp32 accumulator: many chunks of low-precision partial sums would lose bits.
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_dw else None
        loss_sum = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for start in range(0, hidden.shape[0], chunk_size):
            h = hidden[start:start + chunk_size]
            t = targets[start:start + chunk_size]
            logits = (h @ weight.t()).float()
            valid = (t != ignore_index).float()
            if token_weights is not None:
                valid = valid * token_weights[start:start + chunk_size].float()
            local_t = t - first
            mine = (t != ignore_index) & (local_t >= 0) & (local_t < weight.shape[0])
            safe_t = torch.where(mine, local_t, torch.zeros_like(t))
            picked = logits.gather(1, safe_t[:, None]).squeeze(1) * mine
            # log-sum-exp in place: one [chunk, V] fp32 buffer is all the chunk ever holds.
            row_max = logits.amax(dim=-1, keepdim=True)
            if vocab_group is not None:
                dist.all_reduce(row_max, op=dist.ReduceOp.MAX, group=vocab_group)
            exp = logits.sub_(row_max).exp_()
            row_sum = exp.sum(dim=-1, keepdim=True)
            if vocab_group is not None:
                both = torch.cat([row_sum, picked[:, None]], dim=1)
                dist.all_reduce(both, group=vocab_group)
                row_sum, picked = both[:, :1], both[:, 1]
            lse = (row_max + row_sum.log()).squeeze(1)
            loss_sum += ((lse - picked) * valid).sum()
            if need_dh or need_dw:
                grad_logits = exp.div_(row_sum)  # softmax
                grad_logits[torch.arange(len(t), device=t.device), safe_t] -= mine.float()
                grad_logits *= valid[:, None]
                grad_logits = grad_logits.to(h.dtype)
                if need_dh:
                    grad_hidden[start:start + chunk_size] = grad_logits @ weight
                if need_dw:
                    if h.dtype == torch.float32:
                        grad_weight.addmm_(grad_logits.t(), h)  # no [V, H] temporary
                    else:
                        grad_weight += (grad_logits.t() @ h).float()
        ctx.save_for_backward(grad_hidden, grad_weight)
        ctx.normalizer = normalizer
        ctx.weight_dtype = weight.dtype
        return loss_sum / normalizer

    @staticmethod
    def backward(ctx, grad_out):
        grad_hidden, grad_weight = ctx.saved_tensors
        scale = grad_out / ctx.normalizer
        dh = (grad_hidden * scale.to(grad_hidden.dtype)) if grad_hidden is not None else None
        dw = (grad_weight * scale).to(ctx.weight_dtype) if grad_weight is not None else None
        return dh, dw, None, None, None, None, None, None


linear_cross_entropy = Op("linear_cross_entropy", linear_cross_entropy_reference)


@linear_cross_entropy.set_example
def _example(tokens: int, dtype: torch.dtype):
    # Qwen3's vocabulary against a 1024 hidden state, one target in ten ignored.
    hidden = torch.randn(tokens, 1024, dtype=dtype, requires_grad=True)
    weight = (0.02 * torch.randn(151936, 1024, dtype=dtype)).requires_grad_()
    targets = torch.randint(0, 151936, (tokens,))
    targets[::10] = IGNORE_INDEX
    return (hidden, weight, targets), {}


@linear_cross_entropy.register("chunked", devices=DEVICE_TYPES, priority=10)
def linear_cross_entropy_chunked(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, *,
                                 normalizer: Optional[float | torch.Tensor] = None, ignore_index: int = IGNORE_INDEX,
                                 chunk_size: int = 1024, token_weights: Optional[torch.Tensor] = None,
                                 vocab_group=None) -> torch.Tensor:
    norm = _normalizer(targets, normalizer, ignore_index, token_weights)
    return _ChunkedLinearCrossEntropy.apply(hidden, weight, targets, norm, ignore_index, chunk_size, token_weights,
                                            vocab_group)
