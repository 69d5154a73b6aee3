"""ModelSpec.parallelize: a package's own step of the checklist runs after freezing and before
recompute and FSDP, sees the plain model, and what it reports is kept in the build's record."""

from __future__ import annotations

import copy
import dataclasses

import torch
import torch.distributed as dist
import torch.nn as nn
from shardzoo.config import config_from_dict
from shardzoo.parallel import build_meshes, init_distributed
from shardzoo.testing.tiny_lm import SPEC
from shardzoo.train.build import build_model
from shardzoo.train.hf_config import resolve_model


def test_the_package_step_runs_between_freezing_and_fsdp(minimal_raw):
    raw = copy.deepcopy(minimal_raw)
    raw["model"]["freeze_modules"] = ["model.embed_tokens"]
    raw["parallel"] = {"param_dtype": "fp32", "recompute": True}
    cfg = config_from_dict(raw)
    seen = {}

    def parallelize(model: nn.Module, hf_config, meshes, run_cfg) -> list[str]:
        block = model.model.layers[0]
        seen["frozen"] = not model.model.embed_tokens.weight.requires_grad  # freezing came first
        seen["plain"] = type(block).__name__ == "TinyLMLayer"  # neither recompute nor FSDP wrapped it yet
        seen["dense mesh"] = meshes.dense.size() == 1 and run_cfg is cfg and hf_config.hidden_size == 32
        block.mlp.down_proj.weight.requires_grad_(False)  # something the plan's patterns cannot say
        return ["model.layers.0.mlp.down_proj (kept fixed)"]

    init_distributed("cpu")
    try:
        spec, hf_config = resolve_model(cfg)
        built = build_model(cfg, dataclasses.replace(spec, parallelize=parallelize), hf_config,
                            build_meshes("cpu", 1, 1, 1, 1), torch.device("cpu"))
    finally:
        dist.destroy_process_group()
    assert spec is SPEC and seen == {"frozen": True, "plain": True, "dense mesh": True}
    assert built.customised == ["model.layers.0.mlp.down_proj (kept fixed)"]
    assert built.recomputed and built.fsdp_units == ["model.layers.0", "model.layers.1"]
    assert not built.model.model.layers[0].mlp.down_proj.weight.requires_grad  # FSDP kept the package's choice
