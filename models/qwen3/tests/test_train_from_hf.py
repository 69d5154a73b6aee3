"""An HF Qwen3 checkpoint directory loads into the meta-built, FSDP2-sharded model exactly."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.distributed as dist
from shardzoo.config import config_from_dict
from shardzoo.parallel import build_meshes, init_distributed
from shardzoo.train.build import build_model
from shardzoo.train.hf_config import resolve_model
from shardzoo_qwen3 import SPEC, tiny_config
from transformers import Qwen3ForCausalLM as HFQwen3

REPO = Path(__file__).resolve().parents[3]


def save_checkpoint(model, path: Path, **kwargs) -> None:
    """transformers' save_pretrained, with the architecture this package claims in config.json (the
    same name here; a package scaffolded from this one claims its own)."""
    model.save_pretrained(path, **kwargs)
    config = json.loads((path / "config.json").read_text())
    config["architectures"] = list(SPEC.architectures)
    (path / "config.json").write_text(json.dumps(config))


def test_checkpoint_loads_under_fsdp_and_gives_hf_loss(tmp_path):
    config = tiny_config(tie_word_embeddings=True)
    torch.manual_seed(0)
    ref = HFQwen3(config)
    save_checkpoint(ref, tmp_path / "ckpt", max_shard_size="30KB")
    cfg = config_from_dict({
        "model": {"model_name_or_path": str(tmp_path / "ckpt"), "tokenizer_name_or_path": str(REPO / "data/tokenizer")},
        "data": {"dataset": "alpaca_sample"},
        "parallel": {"param_dtype": "fp32"},
        "training": {"output_dir": str(tmp_path / "out")},
    })
    init_distributed("cpu")
    try:
        spec, hf_config = resolve_model(cfg)
        assert spec is SPEC  # found through config.json architectures
        built = build_model(cfg, spec, hf_config, build_meshes("cpu", 1, 1, 1, 1), torch.device("cpu"))
        assert built.fsdp_units == ["model.layers.0", "model.layers.1"]
        ids = torch.randint(0, config.vocab_size, (2, 10))
        targets = torch.cat([ids[:, 1:], torch.full((2, 1), -100)], 1)
        with torch.no_grad():
            ours = built.task(ids, targets, normalizer=float((targets != -100).sum()))
            want = ref(input_ids=ids, labels=ids).loss
        torch.testing.assert_close(ours, want, atol=2e-5, rtol=2e-5)
    finally:
        dist.destroy_process_group()


def test_missing_and_unexpected_keys_are_listed(tmp_path):
    import pytest
    from safetensors.torch import load_file, save_file

    config = tiny_config()
    save_checkpoint(HFQwen3(config), tmp_path / "ckpt")
    weights = load_file(str(tmp_path / "ckpt" / "model.safetensors"))
    del weights["model.layers.1.mlp.up_proj.weight"]
    weights["model.layers.1.mlp.extra_proj.weight"] = torch.zeros(2, 2)
    save_file(weights, str(tmp_path / "ckpt" / "model.safetensors"))
    cfg = config_from_dict({
        "model": {"model_name_or_path": str(tmp_path / "ckpt"), "tokenizer_name_or_path": str(REPO / "data/tokenizer")},
        "data": {"dataset": "alpaca_sample"}, "training": {"output_dir": str(tmp_path / "out")}})
    init_distributed("cpu")
    try:
        spec, hf_config = resolve_model(cfg)
        with pytest.raises(KeyError, match=r"missing \['model.layers.1.mlp.up_proj.weight'\] \(1\); "
                                           r"unexpected \['model.layers.1.mlp.extra_proj.weight'\] \(1\)"):
            build_model(cfg, spec, hf_config, build_meshes("cpu", 1, 1, 1, 1), torch.device("cpu"))
    finally:
        dist.destroy_process_group()
