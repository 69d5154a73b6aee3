"""Path one: a config without model_id trains any HF causal LM under the same FSDP2 wrapping."""

import copy

import pytest
import torch
import yaml
from shardzoo.config import config_from_dict
from shardzoo.train import train
from shardzoo.train.task import CausalLMTask

TINY = {
    "llama": dict(model_type="llama", architectures=["LlamaForCausalLM"], vocab_size=1024, hidden_size=32,
                  intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  max_position_embeddings=512, tie_word_embeddings=False),
    "qwen2": dict(model_type="qwen2", architectures=["Qwen2ForCausalLM"], vocab_size=1024, hidden_size=32,
                  intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  max_position_embeddings=512, tie_word_embeddings=True),
}


@pytest.mark.parametrize("family", sorted(TINY))
def test_task_loss_equals_hf_loss(family):
    """Our chunked head on an HF model gives HF's own label loss (mean over non-ignored tokens)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    fields = dict(TINY[family])
    config = AutoConfig.for_model(fields.pop("model_type"), **fields)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    ids = torch.randint(0, 1024, (2, 9))
    labels = ids.clone()
    labels[0, :3] = -100
    targets = torch.cat([labels[:, 1:], torch.full((2, 1), -100)], dim=1)
    n = int((targets != -100).sum())
    ours = CausalLMTask(model, chunk_size=5)(ids, targets, normalizer=float(n))
    ref = model(input_ids=ids, labels=labels).loss
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("family", sorted(TINY))
def test_automodel_trains_under_fsdp(family, tmp_path, minimal_raw):
    model_dir = tmp_path / family
    model_dir.mkdir()
    import json
    (model_dir / "config.json").write_text(json.dumps(TINY[family]))
    raw = copy.deepcopy(minimal_raw)
    raw["model"] = {"model_name_or_path": str(model_dir), "train_from_scratch": True,
                    "tokenizer_name_or_path": minimal_raw["model"]["tokenizer_name_or_path"]}
    raw["parallel"] = {"param_dtype": "fp32", "recompute": True}
    raw["training"].update(max_steps=6, lr=3e-3, per_device_train_batch_size=4, progress_bar=False, device="cpu")
    cfg = config_from_dict(raw)
    result = train(cfg)
    assert len(result.losses) == 6 and all(torch.isfinite(torch.tensor(result.losses)))
    assert result.losses[-1] < result.losses[0] - 0.3
    written = yaml.safe_load((tmp_path / "out" / "config.yaml").read_text())
    assert written["model"]["model_id"] is None
