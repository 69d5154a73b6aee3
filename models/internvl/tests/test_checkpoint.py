"""Freezing and export: a tiny InternVL run with the vision tower and projector frozen (FSDP2, 2 gloo
ranks) leaves them at their initial values and trains the language model; its HF export loads in
transformers' InternVLForConditionalGeneration and gives our logits."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from shardzoo.parallel.materialize import init_parameters
from shardzoo.testing import run_training
from shardzoo_internvl import SPEC, InternVLForConditionalGeneration
from transformers import InternVLForConditionalGeneration as HFInternVL

REPO = Path(__file__).resolve().parents[3]
CONFIG = REPO / "models/internvl/configs/tune_internvl_tiny.yaml"
FROZEN = ("model.vision_tower.", "model.multi_modal_projector.")


def test_frozen_parts_keep_their_init_and_the_export_loads_in_transformers(tmp_path):
    run_training(CONFIG, tmp_path, nproc=2, cwd=REPO, overrides=[
        "--training.max_steps", "3", "--training.per_device_train_batch_size", "4",
        "--model.freeze_modules", "[model.vision_tower, model.multi_modal_projector]",
        "--training.export_hf_at_end", "true", "--training.export_dtype", "float32"])
    exported = load_file(tmp_path / "hf" / "model.safetensors")
    hf = HFInternVL.from_pretrained(tmp_path / "hf", dtype=torch.float32)
    config = hf.config
    initial = InternVLForConditionalGeneration(config)
    init_parameters(initial, 42, SPEC.init_fn(config))  # the config's training.seed
    for name, value in initial.state_dict().items():
        if name.startswith(FROZEN):
            assert torch.equal(exported[name], value), f"{name} is frozen but changed"
        elif name.endswith("q_proj.weight"):
            assert not torch.equal(exported[name], value), f"{name} should have trained"

    ours = InternVLForConditionalGeneration(config)
    ours.load_state_dict(dict(SPEC.adapter.from_hf(exported.items(), config)))
    ids = torch.tensor([[5, 9, 1024] + [1026] * 4 + [1025, 40, 41]])
    pixels = torch.randn(1, 3, 56, 56, generator=torch.Generator().manual_seed(0))
    hf.eval()
    ours.eval()
    with torch.no_grad():
        want = hf(input_ids=ids, pixel_values=pixels).logits
        got = ours(ids, pixel_values=pixels)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=2e-5)  # fp32, SDPA vs eager attention: ~1e-7
