"""Our Qwen3-MoE against transformers' Qwen3MoeForCausalLM (eager experts), fp32: the second MoE on
the same core (softmax-then-top-k router, concatenated gate/up, a dense layer in between)."""

import pytest
import torch
from shardzoo import ops
from shardzoo.checkpoint import iter_safetensors
from shardzoo.parallel.materialize import load_parameters
from shardzoo.testing import assert_grads_close
from shardzoo.train.task import CausalLMTask
from shardzoo_qwen3 import MOE_SPEC, Qwen3MoeForCausalLM, moe_tiny_config
from transformers import Qwen3MoeForCausalLM as HFQwen3Moe

# fp32; observed ~2e-7 on logits (another summation order of the k expert outputs). Same margin
# argument as test_parity.py: a wrong router order or gate/up layout is off by > 1e-2.
TOL = dict(atol=2e-5, rtol=2e-5)


def make_pair(**overrides):
    config = moe_tiny_config(output_router_logits=True, router_aux_loss_coef=0.5, **overrides)
    config._attn_implementation = "eager"
    config._experts_implementation = "eager"
    torch.manual_seed(0)
    ref = HFQwen3Moe(config).train()
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    ours = Qwen3MoeForCausalLM(config).train()
    ours.load_state_dict(ref.state_dict(), strict=True)
    return config, ref, ours


@pytest.mark.parametrize("norm_topk_prob", [True, False])
@pytest.mark.parametrize("grouped_mm", ["reference", "torch_grouped_mm"])
def test_logits_every_grad_and_loss_with_aux_match(norm_topk_prob, grouped_mm):
    config, ref, ours = make_pair(norm_topk_prob=norm_topk_prob)
    assert type(ours.model.layers[1].mlp).__name__ == "Qwen3MLP"  # the dense branch is covered
    ids = torch.randint(0, config.vocab_size, (2, 13))
    labels = ids.clone()
    labels[:, :3] = -100
    targets = torch.cat([labels[:, 1:], torch.full((2, 1), -100)], 1)
    out = ref(input_ids=ids, labels=labels)
    ops.grouped_mm.bind("cpu", grouped_mm)
    try:
        torch.testing.assert_close(ours(ids), out.logits, **TOL)
        task = CausalLMTask(ours, chunk_size=7)
        loss = task(ids, targets, normalizer=float((targets != -100).sum()))
    finally:
        ops.grouped_mm.bind("cpu")
    torch.testing.assert_close(loss, out.loss, **TOL)
    task.end_step()
    torch.testing.assert_close(task.routing_metrics()["aux_loss"], out.aux_loss.item(), **TOL)
    out.loss.backward()
    loss.backward()
    assert assert_grads_close(ours, ref, **TOL) == len(list(ours.parameters()))


def test_loads_per_expert_hf_checkpoint_and_exports_it_back(tmp_path):
    """save_pretrained writes the hub layout (one tensor per expert); the adapter stacks it and
    writes it back key for key."""
    from safetensors.torch import load_file

    config, ref, _ = make_pair()
    ref.save_pretrained(tmp_path)
    on_disk = load_file(str(tmp_path / "model.safetensors"))
    assert "model.layers.0.mlp.experts.7.gate_proj.weight" in on_disk
    ours = Qwen3MoeForCausalLM(config)
    load_parameters(ours, MOE_SPEC.adapter.from_hf(iter_safetensors(tmp_path), config), str(tmp_path))
    expected = ref.state_dict()
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p, expected[name], atol=0, rtol=0)
    exported = dict(MOE_SPEC.adapter.to_hf(ours.state_dict().items(), config))
    assert sorted(exported) == sorted(on_disk)
    for key, value in on_disk.items():
        torch.testing.assert_close(exported[key], value, atol=0, rtol=0)
