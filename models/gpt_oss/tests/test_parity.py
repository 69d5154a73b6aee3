"""Our GPT-OSS against transformers' GptOssForCausalLM (eager attention, eager experts), fp32."""

import contextlib
import types

import pytest
import torch
from safetensors.torch import save_file
from shardzoo import ops
from shardzoo.checkpoint import iter_safetensors
from shardzoo.parallel.materialize import load_parameters
from shardzoo.testing import assert_grads_close
from shardzoo.train.task import CausalLMTask
from shardzoo_gpt_oss import SPEC, GptOssForCausalLM, tiny_config
from shardzoo_gpt_oss.modeling_gpt_oss import SWIGLU_ALPHA, SWIGLU_LIMIT, GptOssMLP
from transformers import GptOssConfig
from transformers import GptOssForCausalLM as HFGptOss

# fp32 end to end. Observed: logits differ by ~1e-7 (expert outputs summed in another order, SDPA
# vs eager softmax). 2e-5 keeps ~100x margin; a real bug (interleave vs chunk, a missing clamp,
# router order, sink or YaRN factor) moves logits by > 1e-2.
TOL = dict(atol=2e-5, rtol=2e-5)


def hf_experts(**fields):
    """transformers' expert layer at a tiny width: its `alpha` and `limit` are what that release applies."""
    from transformers.models.gpt_oss.modeling_gpt_oss import GptOssExperts

    return GptOssExperts(GptOssConfig(hidden_size=8, intermediate_size=4, num_local_experts=1, **fields))


def _reference_applies_the_configs_limit() -> bool:
    return hf_experts(swiglu_limit=0.5).limit == 0.5


# The tiny config's limit 0.5 makes both clamps fire at the init scale; transformers releases that hard-code
# 7.0 (5.17, say) compute another activation, so there is nothing to compare against.
needs_configured_limit = pytest.mark.skipif(not _reference_applies_the_configs_limit(),
                                            reason="this transformers hard-codes swiglu_limit 7.0")


def make_pair(**overrides):
    config = tiny_config(output_router_logits=True, router_aux_loss_coef=0.9, **overrides)
    config._attn_implementation = "eager"
    config._experts_implementation = "eager"
    torch.manual_seed(0)
    ref = HFGptOss(config).train()
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if name.endswith("sinks"):
                p.normal_(0, 2)  # at the init std of 0.02 the sinks would barely matter
            elif "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
            elif "bias" in name:
                p.normal_(0, 0.1)
    ours = GptOssForCausalLM(config).train()
    ours.load_state_dict(ref.state_dict(), strict=True)
    return config, ref, ours


@contextlib.contextmanager
def bound(op, backend):
    op.bind("cpu", backend)
    try:
        yield
    finally:
        op.bind("cpu")


def test_both_clamps_fire_and_sinks_matter():
    """The tiny config must exercise what it claims to, or the parity below proves little."""
    config, ref, _ = make_pair()
    x = torch.randn(64, config.hidden_size)
    gu = x @ ref.model.layers[0].mlp.experts.gate_up_proj[0]
    assert (gu[:, ::2] > config.swiglu_limit).any() and (gu[:, 1::2].abs() > config.swiglu_limit).any()
    assert ref.model.layers[0].self_attn.sinks.abs().max() > 1.0


def test_a_config_without_the_activation_fields_gets_the_released_constants():
    """transformers 5.17 (the GPU machine's) has no swiglu_alpha / swiglu_limit fields and hard-codes
    1.702 and 7.0: our expert layer built from such a config computes what those values give."""
    hf = hf_experts()
    assert (hf.alpha, hf.limit) == (SWIGLU_ALPHA, SWIGLU_LIMIT)  # transformers' defaults, field or constant
    fields = {k: v for k, v in tiny_config().to_dict().items() if k not in ("swiglu_alpha", "swiglu_limit")}
    torch.manual_seed(0)
    without = GptOssMLP(types.SimpleNamespace(**fields))
    with torch.no_grad():
        for param in without.parameters():  # built empty; the model's init_fn fills them
            param.normal_(0, 0.5)
    x = torch.randn(2, 5, fields["hidden_size"])  # expert pre-activations reach about 10: the limit 7 clamps
    for limit, same in ((SWIGLU_LIMIT, True), (0.5, False)):
        explicit = GptOssMLP(types.SimpleNamespace(**fields, swiglu_alpha=SWIGLU_ALPHA, swiglu_limit=limit))
        explicit.load_state_dict(without.state_dict())
        assert torch.equal(without(x), explicit(x)) is same, limit


@needs_configured_limit
@pytest.mark.parametrize("grouped_mm", ["reference", "torch_grouped_mm"])
def test_logits_every_grad_and_aux_loss_match(grouped_mm):
    config, ref, ours = make_pair()
    ids = torch.randint(0, config.vocab_size, (2, 13))
    ids[0, 2] = config.pad_token_id  # the padding row of the embedding gets no gradient
    out = ref(input_ids=ids)
    with bound(ops.grouped_mm, grouped_mm):
        logits = ours(ids)
    torch.testing.assert_close(logits, out.logits, **TOL)
    probe = torch.randn(out.logits.shape, generator=torch.Generator().manual_seed(1))
    (out.logits * probe).sum().backward()
    with bound(ops.grouped_mm, grouped_mm):
        (ours(ids) * probe).sum().backward()
    assert ours.model.embed_tokens.weight.grad[config.pad_token_id].abs().max() == 0
    assert assert_grads_close(ours, ref, **TOL) == len(list(ours.parameters()))


@needs_configured_limit
def test_loss_with_aux_through_task_matches_hf():
    config, ref, ours = make_pair()
    ids = torch.randint(0, config.vocab_size, (2, 13))
    labels = ids.clone()
    labels[:, :3] = -100
    targets = torch.cat([labels[:, 1:], torch.full((2, 1), -100)], 1)
    out = ref(input_ids=ids, labels=labels)
    task = CausalLMTask(ours, chunk_size=5)
    loss = task(ids, targets, normalizer=float((targets != -100).sum()))
    torch.testing.assert_close(loss, out.loss, **TOL)
    task.end_step()
    metrics = task.routing_metrics()
    torch.testing.assert_close(metrics["aux_loss"], out.aux_loss.item(), **TOL)
    # 2 x 13 tokens, top-2 of 4 experts: the load of every (layer, expert) lies in [0, 26].
    assert 0 <= metrics["expert_tokens_min"] <= metrics["expert_tokens_max"] <= 26


def test_sliding_window_and_documents_in_packed_rows():
    """Two documents packed in one row give the logits of each document alone."""
    config, _, ours = make_pair()
    a, b = torch.randint(0, config.vocab_size, (1, 9)), torch.randint(0, config.vocab_size, (1, 6))
    packed = torch.cat([a, b], 1)
    positions = torch.cat([torch.arange(9), torch.arange(6)])[None]
    logits = ours(packed, positions, ops.document_ids_from_position_ids(positions))
    torch.testing.assert_close(logits[:, :9], ours(a), **TOL)
    torch.testing.assert_close(logits[:, 9:], ours(b), **TOL)


def test_loads_bf16_hf_layout_and_exports_it_back(tmp_path):
    config, ref, _ = make_pair()
    ref.save_pretrained(tmp_path, max_shard_size="40KB")
    ours = GptOssForCausalLM(config)
    load_parameters(ours, SPEC.adapter.from_hf(iter_safetensors(tmp_path), config), str(tmp_path))
    expected = ref.state_dict()
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p, expected[name], atol=0, rtol=0)
    exported = dict(SPEC.adapter.to_hf(ours.state_dict().items(), config))
    assert sorted(exported) == sorted(expected)


def test_loads_released_mxfp4_layout_like_transformers_dequantises(tmp_path):
    """Synthetic MXFP4 blocks/scales for every expert matrix, dequantised by us and by transformers."""
    from transformers.integrations.mxfp4 import convert_moe_packed_tensors

    config, ref, _ = make_pair()
    gen = torch.Generator().manual_seed(3)
    state = {k: v for k, v in ref.state_dict().items() if not k.endswith(("gate_up_proj", "down_proj"))}
    expected = {}
    e, h, i = config.num_local_experts, config.hidden_size, config.intermediate_size
    for layer in range(config.num_hidden_layers):
        for name, (rows, cols) in {"gate_up_proj": (2 * i, h), "down_proj": (h, i)}.items():
            key = f"model.layers.{layer}.mlp.experts.{name}"
            blocks = torch.randint(0, 256, (e, rows, cols // 32, 16), dtype=torch.uint8, generator=gen)
            scales = torch.randint(118, 130, (e, rows, cols // 32), dtype=torch.uint8, generator=gen)
            state[key + "_blocks"], state[key + "_scales"] = blocks, scales
            expected[key] = convert_moe_packed_tensors(blocks, scales, dtype=torch.float32)
    save_file(state, str(tmp_path / "model.safetensors"))
    ours = GptOssForCausalLM(config)
    load_parameters(ours, SPEC.adapter.from_hf(iter_safetensors(tmp_path), config), str(tmp_path))
    params = dict(ours.named_parameters())
    for key, value in expected.items():
        torch.testing.assert_close(params[key], value, atol=0, rtol=0)
    assert params[key].abs().max() > 0


def test_mxfp4_scales_without_blocks_name_the_key(tmp_path):
    config, ref, _ = make_pair(num_hidden_layers=2)
    state = {k: v for k, v in ref.state_dict().items() if not k.endswith(("gate_up_proj", "down_proj"))}
    state["model.layers.0.mlp.experts.down_proj_scales"] = torch.zeros(4, 64, 1, dtype=torch.uint8)
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(KeyError, match="model.layers.0.mlp.experts.down_proj_scales"):
        list(SPEC.adapter.from_hf(iter_safetensors(tmp_path), config))
