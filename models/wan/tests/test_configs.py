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
