"""training.loss_reduction square is InternVL 3.5's square-root averaging: per-sample token weights
1/sqrt(n_label_tokens), loss = sum(CE * w) / sum(w), computed here from full logits as the original
training code does (labels shifted, weights built from the unshifted labels and shifted with them)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from shardzoo.data.loader import collate
from shardzoo.data.rows import Row
from shardzoo.train.task import CausalLMTask
from shardzoo_internvl import InternVLForConditionalGeneration, tiny_config


def internvl_square_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The original formula: weights from unshifted labels (-100 = no loss), then shifted by one."""
    weights = torch.zeros(labels.shape)
    for i, row in enumerate(labels):
        n = int((row != -100).sum())
        weights[i, row != -100] = n ** -0.5 if n else 0.0
    shift_logits, shift_labels, shift_w = logits[:, :-1], labels[:, 1:], weights[:, 1:]
    ce = F.cross_entropy(shift_logits.reshape(-1, logits.shape[-1]), shift_labels.reshape(-1), ignore_index=-100,
                         reduction="none")
    return (ce * shift_w.reshape(-1)).sum() / shift_w.sum()


def test_square_reduction_matches_internvl_formula():
    torch.manual_seed(0)
    config = tiny_config()
    model = InternVLForConditionalGeneration(config)
    gen = torch.Generator().manual_seed(3)
    rows, labels = [], []
    for n, answer in ((12, 3), (20, 11)):  # answers of 3 and 11 tokens: different weights per token
        ids = torch.randint(0, 150, (n,), generator=gen)
        ids[1:5] = config.image_token_id
        label = torch.full((n,), -100)
        label[n - answer:] = ids[n - answer:]
        rows.append(Row(ids.numpy(), torch.cat([label[1:], torch.tensor([-100])]).numpy()))
        labels.append(label)
    pixels = torch.randn(2, 3, 56, 56, generator=gen)
    batch = collate(rows, pad_id=0, loss_reduction="square")
    task = CausalLMTask(model, chunk_size=7)
    ours = task(batch.input_ids, batch.targets, normalizer=batch.loss_normalizer, pixel_values=pixels,
                loss_weights=batch.loss_weights)
    padded = torch.full(batch.input_ids.shape, -100)
    for i, label in enumerate(labels):
        padded[i, :len(label)] = label
    want = internvl_square_loss(model(batch.input_ids, pixel_values=pixels), padded)
    torch.testing.assert_close(ours, want, rtol=1e-6, atol=1e-6)  # fp32, chunked vs full-logit CE
    token_mean = task(batch.input_ids, batch.targets, normalizer=batch.num_targets, pixel_values=pixels)
    assert abs(token_mean - want) > 1e-3  # the option changes the loss: the check above can fail
