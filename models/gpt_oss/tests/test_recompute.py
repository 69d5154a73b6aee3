"""Recompute with the router's load-balancing loss on: the loss and every gradient (the router's
included) equal the run without recompute; reentrant recompute, which cannot carry that gradient, is
refused before anything is trained."""

from pathlib import Path

import pytest
import torch
from shardzoo.config import ConfigError, load_config
from shardzoo.parallel.materialize import init_parameters
from shardzoo.testing.recompute import recompute_matches
from shardzoo.train.trainer import train
from shardzoo_gpt_oss import SPEC, GptOssForCausalLM, tiny_config

REPO = Path(__file__).resolve().parents[3]


def build(config):
    model = GptOssForCausalLM(config).train()
    init_parameters(model, 0, SPEC.init_fn(config))
    return model


def test_recompute_with_aux_loss_gives_the_same_loss_and_grads():
    config = tiny_config(output_router_logits=True, router_aux_loss_coef=0.9)
    torch.manual_seed(0)
    ids = torch.randint(0, config.vocab_size, (2, 12))
    (loss, grads), (loss_rc, grads_rc) = recompute_matches(lambda: build(config), ["model.layers.{*}"], False, ids)
    # Recompute replays the same ops on the same values in the same order: equal bit for bit.
    assert torch.equal(loss, loss_rc)
    assert grads.keys() == grads_rc.keys() and any("router" in n for n in grads)
    for name in grads:
        assert torch.equal(grads[name], grads_rc[name]), name


def test_reentrant_recompute_with_aux_loss_is_refused(tmp_path):
    cfg = load_config(REPO / "models/gpt_oss/configs/tune_gpt_oss_tiny.yaml",
                      ["--training.output_dir", str(tmp_path), "--parallel.recompute", "true",
                       "--parallel.use_reentrant", "true", "--model.hf_config.output_router_logits", "true",
                       "--training.max_steps", "1"])
    with pytest.raises(ConfigError, match="parallel.use_reentrant: the model adds the router's load-balancing loss"):
        train(cfg)
