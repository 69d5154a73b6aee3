"""Packing changes the batch layout, never the loss: the summed token loss (and its gradients) of
packed rows equals that of the same samples unpacked."""

from pathlib import Path

import torch
from shardzoo.config import Config, DataConfig, TrainingConfig
from shardzoo.data import build_train_data, collate, load_tokenizer
from shardzoo.train.task import CausalLMTask
from shardzoo_qwen3 import Qwen3ForCausalLM, tiny_config

REPO = Path(__file__).resolve().parents[3]


def rows(tmp_path, tokenizer, packing: bool):
    cfg = Config(data=DataConfig(dataset="alpaca_sample,sharegpt_sample", dataset_dir=str(REPO / "data"),
                                 cutoff_len=256, max_samples=24, packing=packing, cache_dir=str(tmp_path)),
                 training=TrainingConfig(output_dir=str(tmp_path)))
    loader = build_train_data(cfg, tokenizer, rank=0, world=1, local_rank=0, barrier=lambda: None).loader
    return [loader.rows[i] for i in range(len(loader.rows))]


def summed_loss_and_grads(task, batch):
    task.zero_grad()
    loss = task(batch.input_ids, batch.targets, normalizer=1.0, position_ids=batch.position_ids,
                document_ids=batch.document_ids)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in task.named_parameters()}


def test_packed_batch_has_the_loss_and_gradients_of_the_unpacked_samples(tmp_path):
    tokenizer = load_tokenizer(str(REPO / "data/tokenizer"))
    plain, packed = rows(tmp_path, tokenizer, False), rows(tmp_path, tokenizer, True)
    assert len(packed) < len(plain) / 3  # several documents per row, so a leak across them would show
    torch.manual_seed(0)
    task = CausalLMTask(Qwen3ForCausalLM(tiny_config(vocab_size=len(tokenizer))), chunk_size=128)
    pad = tokenizer.pad_token_id
    loss_plain, grads_plain = summed_loss_and_grads(task, collate(plain, pad))
    batch = collate(packed, pad)
    assert batch.num_targets == collate(plain, pad).num_targets
    loss_packed, grads_packed = summed_loss_and_grads(task, batch)
    # fp32 sums of ~4k token losses in different orders (rows of other lengths, other chunking):
    # observed relative difference 7e-8. Letting documents see each other moves this random-init
    # model's loss by 5e-4 relative (checked below), so 1e-5 separates the two by >50x both ways.
    torch.testing.assert_close(loss_packed, loss_plain, rtol=1e-5, atol=0)
    # Gradients of a loss summed (not averaged) over ~4k tokens reach ~400; summed in another order
    # in fp32 they differ by up to 4.6e-5 observed (fp32 eps 1.2e-7 x 400 = 5e-5): rtol 1e-4 covers that.
    for name, grad in grads_plain.items():
        torch.testing.assert_close(grads_packed[name], grad, rtol=1e-4, atol=1e-6,
                                   msg=lambda m, name=name: f"{name}: {m}")
    # the same packed rows without per-document attention (and positions) fail the tolerance above
    leaky = task(batch.input_ids, batch.targets, normalizer=1.0).detach()
    assert abs(leaky - loss_plain) / loss_plain > 10 * 1e-5
