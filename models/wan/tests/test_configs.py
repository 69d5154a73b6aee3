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
    # I2V: 36 input channels (noise 16 + mask 4 + the first frame's latents 16), 16 out. Wan2.1's adds the
    # CLIP embedder and each block's image keys and values (~2.1B): "14B" counts 16.4B; Wan2.2's has none.
    ("wan2.1-i2v-14b", (16.3e9, 16.5e9), 36),
    ("wan2.2-i2v-a14b", (14.2e9, 14.4e9), 36),
])
def test_released_sizes(name, params, channels):
    config = WanConfig.from_dict(json.loads((CONFIGS / name / "config.json").read_text()))
    with torch.device("meta"):
        model = WanTransformer3DModel(config)
    total = sum(p.numel() for p in model.parameters())
    assert params[0] < total < params[1]
    out_channels = 16 if channels == 36 else channels  # I2V predicts the 16 noise channels only
    assert model.patch_embedding.in_channels == channels and model.proj_out.out_features == out_channels * 4


def test_unknown_config_key_is_named():
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['num_layer'\]"):
        WanConfig.from_dict({"_class_name": "WanTransformer3DModel", "num_layer": 2})


# An extraction of the released video sizes (81 x 480 x 832; TI2V-5B 121 x 704 x 1280) as index.json
# records it: Wan2.1's VAE makes 16 x 21 x 60 x 104 latents, Wan2.2's 48 x 31 x 44 x 80.
WAN21_LATENTS, WAN22_LATENTS = [16, 21, 60, 104], [48, 31, 44, 80]


def _features(folder, latents, image_to_video: dict | None = None) -> str:
    index = {"rows": 1, "text_len": 512, "shards": [], "latent_shape": latents, **(image_to_video or {})}
    (folder / "index.json").write_text(json.dumps(index))
    return str(folder)


# What an image-to-video extraction adds: the Wan2.1 VAE's 4 mask channels, and Wan2.1's CLIP tokens.
WAN21_I2V, WAN22_I2V = {"mask_channels": 4, "image_tokens": True, "image_shape": [257, 1280]}, {"mask_channels": 4}


@pytest.mark.parametrize("train_config,model,cp,tokens,latents,i2v", [
    ("tune_wan2_1_t2v_1_3b.yaml", "wan2.1-t2v-1.3b", 1, 21 * 30 * 52, WAN21_LATENTS, {}),
    ("tune_wan2_1_t2v_14b.yaml", "wan2.1-t2v-14b", 2, 21 * 30 * 52, WAN21_LATENTS, {}),
    ("tune_wan2_2_t2v_a14b.yaml", "wan2.1-t2v-14b", 2, 21 * 30 * 52, WAN21_LATENTS, {}),  # each expert: 14B shapes
    ("tune_wan2_2_ti2v_5b.yaml", "wan2.2-ti2v-5b", 1, 31 * 22 * 40, WAN22_LATENTS, {}),
    ("tune_wan2_1_i2v_14b.yaml", "wan2.1-i2v-14b", 2, 21 * 30 * 52, WAN21_LATENTS, WAN21_I2V),
    ("tune_wan2_2_i2v_a14b.yaml", "wan2.2-i2v-a14b", 2, 21 * 30 * 52, WAN21_LATENTS, WAN22_I2V),
])
def test_training_configs_fit_eight_64gb_devices(tmp_path, train_config, model, cp, tokens, latents, i2v):
    """The 8-device configs parse, pass the task's checks, split their video tokens and heads over cp,
    and fit 64 GB per device by `shardzoo plan` (the features folder stands in for an extraction)."""
    from shardzoo.config import load_config
    from shardzoo.plan import plan_memory
    from shardzoo.train.hf_config import resolve_model
    from shardzoo_wan.spec import activation_bytes
    from shardzoo_wan.task import FlowMatchingTask

    cfg = load_config(CONFIGS / train_config, ["--model.model_name_or_path", str(CONFIGS / model),
                                               "--task.features", _features(tmp_path, latents, i2v)])
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


def test_tensor_parallel_plan_of_the_14b_config(tmp_path):
    """`shardzoo plan` builds Wan2.1-14B under TP on the meta device (40 heads: tp 2, 4, 8 divide) and its
    estimate splits what lives on the residual stream and what lives per head over the tp ranks."""
    from shardzoo.config import ConfigError, load_config
    from shardzoo.plan import plan_memory

    common = ["--model.model_name_or_path", str(CONFIGS / "wan2.1-t2v-14b"),
              "--task.features", _features(tmp_path, WAN21_LATENTS), "--parallel.cp_size", "1"]
    # Under TP the modulation tables cannot stay fp32 yet (kept out of FSDP, their gradient's sum over the
    # ranks depends on the TP split): the run names the key; the kept modules' own fp32 units work under TP.
    with pytest.raises(ConfigError, match=r"fp32_modules: bare parameters \(scale_shift_table, blocks.0"):
        plan_memory(load_config(CONFIGS / "tune_wan2_1_t2v_14b.yaml", common + ["--parallel.tp_size", "2"]), world=8)
    common += ["--parallel.fp32_modules", "['condition_embedder.time_embedder', 'blocks.{*}.norm2']"]
    one = plan_memory(load_config(CONFIGS / "tune_wan2_1_t2v_14b.yaml", common), world=8)
    tp = plan_memory(load_config(CONFIGS / "tune_wan2_1_t2v_14b.yaml", common + ["--parallel.tp_size", "2"]), world=8)
    assert "tp 2" in tp.mesh
    # Each block gathers its tp shard only (half); the root unit (patch, time and text embeddings, the output
    # projection: whole on every tp rank) does not shrink: 0.62 measured.
    assert tp.gathered < 0.65 * one.gathered
    assert 0.5 * one.activations < tp.activations < 0.75 * one.activations  # the gathered inputs stay whole


def test_wan21_i2v_720p_fits_with_cp_4(tmp_path):
    """The 720P checkpoints train with the 480P config at 720 x 1280 and cp 4, as its header says (75600 video
    tokens: cp 2 would plan 58.7 GiB of 64)."""
    from shardzoo.config import load_config
    from shardzoo.plan import plan_memory

    features = _features(tmp_path, [16, 21, 90, 160], WAN21_I2V)
    cfg = load_config(CONFIGS / "tune_wan2_1_i2v_14b.yaml", ["--model.model_name_or_path",
                                                             str(CONFIGS / "wan2.1-i2v-14b"), "--task.features",
                                                             features, "--parallel.cp_size", "4"])
    assert plan_memory(cfg, world=8).total < 50 * 2**30
