"""The released sizes' diffusers config.json files build the architectures their names promise."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from shardzoo_wan import WanConfig, WanTransformer3DModel

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("name,params,channels", [
    ("wan2.1-t2v-1.3b", (1.40e9, 1.44e9), 16),  # "1.3B" counts 1.42B parameters
    ("wan2.1-t2v-14b", (14.2e9, 14.4e9), 16),
    ("wan2.2-ti2v-5b", (4.9e9, 5.1e9), 48),  # 48-channel latents of the Wan2.2 VAE
])
def test_released_sizes(name, params, channels):
    config = WanConfig.from_dict(json.loads((CONFIGS / name / "config.json").read_text()))
    with torch.device("meta"):
        model = WanTransformer3DModel(config)
    total = sum(p.numel() for p in model.parameters())
    assert params[0] < total < params[1]
    assert model.patch_embedding.in_channels == channels and model.proj_out.out_features == channels * 4


def test_unknown_config_key_is_named():
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['num_layer'\]"):
        WanConfig.from_dict({"_class_name": "WanTransformer3DModel", "num_layer": 2})


@pytest.mark.parametrize("train_config,model,cp,tokens", [
    ("tune_wan2_1_t2v_1_3b.yaml", "wan2.1-t2v-1.3b", 1, 21 * 30 * 52),
    ("tune_wan2_1_t2v_14b.yaml", "wan2.1-t2v-14b", 2, 21 * 30 * 52),
    ("tune_wan2_2_t2v_a14b.yaml", "wan2.1-t2v-14b", 2, 21 * 30 * 52),  # each expert has the 14B shapes
    ("tune_wan2_2_ti2v_5b.yaml", "wan2.2-ti2v-5b", 1, 31 * 22 * 40),
])
def test_training_configs_fit_eight_64gb_devices(tmp_path, train_config, model, cp, tokens):
    """The 8-device configs parse, pass the task's checks, split their video tokens and heads over cp,
    and fit 64 GB per device by `shardzoo plan` (the features folder stands in for an extraction)."""
    from shardzoo.config import load_config
    from shardzoo.plan import plan_memory
    from shardzoo.train.hf_config import resolve_model
    from shardzoo_wan.spec import activation_bytes
    from shardzoo_wan.task import FlowMatchingTask

    (tmp_path / "index.json").write_text('{"rows": 1, "text_len": 512, "shards": []}')
    cfg = load_config(CONFIGS / train_config, ["--model.model_name_or_path", str(CONFIGS / model),
                                               "--task.features", str(tmp_path)])
    spec, config = resolve_model(cfg)
    FlowMatchingTask.check_config(cfg, spec, config)
    assert cfg.parallel.cp_size == cp and tokens % cp == 0 and config.num_attention_heads % cp == 0
    # The estimate counts the released video size's tokens (this rank's share): every block saves its
    # bf16 input, and one recomputed block's internals stay under 20 D + 2 F fp32 values per token.
    dim, n = config.num_attention_heads * config.attention_head_dim, tokens // cp
    saved_inputs = config.num_layers * n * dim * 2
    assert saved_inputs < activation_bytes(cfg, config, True) < saved_inputs + n * (20 * dim + 2 * config.ffn_dim) * 4
    plan = plan_memory(cfg, world=8)
    assert plan.total < 64 * 2**30, plan.rows()
