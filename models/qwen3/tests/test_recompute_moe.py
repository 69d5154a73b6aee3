"""Qwen3-MoE with the router's load-balancing loss: recompute gives the loss and every gradient of the
run without it (the masked routing statistics are formed after the forward, outside the blocks)."""

import torch
from shardzoo.parallel.materialize import init_parameters
from shardzoo.testing.recompute import recompute_matches
from shardzoo_qwen3 import MOE_SPEC, Qwen3MoeForCausalLM, moe_tiny_config


def test_recompute_with_aux_loss_gives_the_same_loss_and_grads():
    config = moe_tiny_config(output_router_logits=True, router_aux_loss_coef=0.01)

    def build():
        model = Qwen3MoeForCausalLM(config).train()
        init_parameters(model, 0, MOE_SPEC.init_fn(config))
        return model

    torch.manual_seed(0)
    ids = torch.randint(0, config.vocab_size, (2, 12))
    (loss, grads), (loss_rc, grads_rc) = recompute_matches(build, ["model.layers.{*}"], False, ids)
    # Recompute replays the same ops on the same values in the same order: equal bit for bit.
    assert torch.equal(loss, loss_rc)
    assert grads.keys() == grads_rc.keys() and any(n.endswith("mlp.gate.weight") for n in grads)
    for name in grads:
        assert torch.equal(grads[name], grads_rc[name]), name
