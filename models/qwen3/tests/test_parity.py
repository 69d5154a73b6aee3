"""Our Qwen3 against transformers' Qwen3ForCausalLM: same weights, fp32, eager reference."""

import json

import pytest
import torch
from shardzoo.checkpoint import CheckpointError, iter_safetensors
from shardzoo.parallel.materialize import load_parameters
from shardzoo.testing import assert_grads_close
from shardzoo_qwen3 import SPEC, Qwen3ForCausalLM, tiny_config
from transformers import Qwen3ForCausalLM as HFQwen3

# fp32 end to end; the two models order reductions differently (SDPA vs eager softmax, fp32
# matmul blocking), observed differences are ~2e-7 on logits of order 1. 2e-5 keeps a margin of
# ~100x while any real bug (wrong norm order, head_dim, rope pairing) is off by > 1e-2.
TOL = dict(atol=2e-5, rtol=2e-5)


def make_pair(**overrides):
    config = tiny_config(**overrides)
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    ref = HFQwen3(config).train()
    ours = Qwen3ForCausalLM(config)
    # Perturb norm weights away from 1 so a misplaced weight multiply cannot hide.
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    ours.load_state_dict(ref.state_dict(), strict=True)
    if config.tie_word_embeddings:
        assert ours.lm_head.weight is ours.model.embed_tokens.weight
    return config, ref, ours


CASES = [dict(tie_word_embeddings=False), dict(tie_word_embeddings=True),
         dict(use_sliding_window=True, sliding_window=4, max_window_layers=1),
         dict(pad_token_id=3)]


@pytest.mark.parametrize("overrides", CASES, ids=["untied", "tied", "sliding", "pad_row"])
def test_logits_and_every_grad_match(overrides):
    config, ref, ours = make_pair(**overrides)
    ids = torch.randint(0, config.vocab_size, (2, 13))
    ids[0, 2] = overrides.get("pad_token_id", 0)
    logits_ref = ref(input_ids=ids).logits
    logits_ours = ours(ids)
    torch.testing.assert_close(logits_ours, logits_ref, **TOL)
    probe = torch.randn(logits_ref.shape, generator=torch.Generator().manual_seed(1))
    (logits_ref * probe).sum().backward()
    (logits_ours * probe).sum().backward()
    skip = ("lm_head.weight",) if config.tie_word_embeddings else ()
    checked = assert_grads_close(ours, ref, skip=skip, **TOL)
    assert checked == len(list(ours.parameters()))


def test_loss_through_task_matches_hf_labels_loss():
    from shardzoo.train.task import CausalLMTask

    config, ref, ours = make_pair()
    ids = torch.randint(0, config.vocab_size, (2, 13))
    labels = ids.clone()
    labels[:, :4] = -100
    targets = torch.cat([labels[:, 1:], torch.full((2, 1), -100)], 1)
    loss = CausalLMTask(ours, chunk_size=7)(ids, targets, normalizer=float((targets != -100).sum()))
    torch.testing.assert_close(loss, ref(input_ids=ids, labels=labels).loss, **TOL)


@pytest.mark.parametrize("tie", [False, True])
@pytest.mark.parametrize("max_shard_size", [None, "20KB"], ids=["single", "sharded"])
def test_loads_hf_safetensors_through_the_adapter(tmp_path, tie, max_shard_size):
    config, ref, _ = make_pair(tie_word_embeddings=tie)
    kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
    ref.save_pretrained(tmp_path, **kwargs)
    assert (tmp_path / "model.safetensors.index.json").is_file() == bool(max_shard_size)
    ours = Qwen3ForCausalLM(config)
    with torch.no_grad():
        for p in ours.parameters():
            p.zero_()
    load_parameters(ours, SPEC.adapter.from_hf(iter_safetensors(tmp_path), config), str(tmp_path))
    ids = torch.randint(0, config.vocab_size, (1, 9))
    torch.testing.assert_close(ours(ids), ref(input_ids=ids).logits, **TOL)


def test_mismatched_checkpoint_lists_the_keys(tmp_path):
    config, ref, _ = make_pair()
    ref.save_pretrained(tmp_path)
    smaller = Qwen3ForCausalLM(tiny_config(num_hidden_layers=1))
    with pytest.raises(KeyError, match=r"missing \[\] \(0\); unexpected \['model.layers.1"):
        load_parameters(smaller, SPEC.adapter.from_hf(iter_safetensors(tmp_path), config), str(tmp_path))
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"a": "model-00001-of-00002.safetensors"}}))
    with pytest.raises(CheckpointError, match="names shard files that do not exist"):
        list(iter_safetensors(tmp_path))


def test_flops_per_token_counts_matmuls():
    config = tiny_config()
    n_matmul = sum(p.numel() for n, p in Qwen3ForCausalLM(config).named_parameters()
                   if p.ndim == 2 and "embed" not in n)
    d, heads, layers = 32, 4, 2
    assert SPEC.flops_per_token(config, 100) == 6 * n_matmul + 12 * layers * heads * d * 100
