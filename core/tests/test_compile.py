"""parallel.compile: each FSDP unit (decoder block) compiled on its own trains the same losses as eager."""

import copy

import torch
from shardzoo.config import config_from_dict
from shardzoo.train.trainer import train


def _losses(minimal_raw, tmp_path, name, **parallel):
    raw = copy.deepcopy(minimal_raw)
    raw["model"]["hf_config"] = {"vocab_size": 1024, "hidden_size": 32, "intermediate_size": 64,
                                 "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                                 "head_dim": 8}
    raw["parallel"] = {"param_dtype": "fp32", **parallel}
    raw["training"].update(output_dir=str(tmp_path / name), max_steps=3, lr=3e-3, per_device_train_batch_size=2,
                           progress_bar=False, device="cpu")
    return train(config_from_dict(raw))


def test_compiled_blocks_train_like_eager(minimal_raw, tmp_path):
    from torch._dynamo.utils import counters

    eager = _losses(minimal_raw, tmp_path, "eager")
    counters.clear()
    compiled = _losses(minimal_raw, tmp_path, "compiled", compile=True, recompute=True)
    assert counters["stats"]["unique_graphs"] >= 1  # the blocks really went through dynamo
    # fp32 on both sides. Inductor may fuse the elementwise chains (RMSNorm, SwiGLU, rotary) and round
    # inside them in another order: a few ulp per op. Equal bit for bit on this CPU (torch 2.13).
    torch.testing.assert_close(torch.tensor(compiled.losses), torch.tensor(eager.losses), atol=1e-5, rtol=1e-5)
