"""The flow-matching task's pieces: per-sample draws, the A14B experts' sigma ranges and the TI2V clean
first frame as the trainer uses them, the task: section's errors, and how configs find the package."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from shardzoo.config import ConfigError, config_from_dict
from shardzoo_wan import WanTransformer3DModel, tiny_config
from shardzoo_wan.flow_matching import flow_matching_loss
from shardzoo_wan.task import FlowMatchingTask, options, sampler
from shardzoo_wan.video_batches import sample_seed

REPO = Path(__file__).resolve().parents[3]

BASE = {"model": {"model_id": "wan", "train_from_scratch": True, "hf_config": {"num_layers": 1}},
        "data": {"dataset": "video_sample", "dataset_dir": str(REPO / "data")},
        "training": {"output_dir": "/tmp/unused"}}


def config(task: dict, **sections):
    raw = copy.deepcopy(BASE)
    raw["task"] = task
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return config_from_dict(raw)


def task_with(**task) -> FlowMatchingTask:
    o = options(config({"features": None, **task, "vae": "data", "text_encoder": "data", "tokenizer": "data"}))
    return FlowMatchingTask(WanTransformer3DModel(tiny_config()), sampler(o), o.first_frame_clean)


def test_a_sample_draws_the_same_whatever_its_batch():
    task = task_with()
    seeds = torch.tensor([sample_seed(42, k) for k in (0, 7, 12)])
    sigma, _, noise, _ = task.draw(seeds, (4, 3, 8, 8))
    alone = task.draw(seeds[1:2], (4, 3, 8, 8))
    assert torch.equal(alone[0], sigma[1:2]) and torch.equal(alone[2], noise[1:2])
    assert not torch.equal(noise[0], noise[1])  # different samples, different noise
    assert sample_seed(42, 7) != sample_seed(43, 7)


def test_text_dropout_swaps_in_the_empty_prompt_per_sample():
    """The samples whose own draw drops their text train on the empty prompt's states, the others on their
    caption's; the draw comes after the noise, so sigma and noise are those of a run without dropout."""
    torch.manual_seed(0)
    o = options(config({"features": None, "vae": "data", "text_encoder": "data", "tokenizer": "data",
                        "text_drop_prob": 0.5}))
    model = WanTransformer3DModel(tiny_config())
    empty = torch.randn(5, 16)
    task = FlowMatchingTask(model, sampler(o), text_drop_prob=o.text_drop_prob, empty_text=empty)
    seen = {}
    model.register_forward_pre_hook(lambda module, args: seen.update(text=args[2].clone()))
    seeds = torch.tensor([sample_seed(42, k) for k in range(8)])
    _, _, noise, dropped = task.draw(seeds, (4, 3, 8, 8))
    assert 0 < int(dropped.sum()) < 8  # both kinds in the batch
    assert torch.equal(task.draw(seeds[3:5], (4, 3, 8, 8))[3], dropped[3:5])  # a sample's own draw, any batch
    assert torch.equal(noise, task_with().draw(seeds, (4, 3, 8, 8))[2])
    text = torch.randn(8, 5, 16)
    task(seeds, torch.ones(8), 8.0, latents=torch.randn(8, 4, 3, 8, 8), text=text)
    for i in range(8):
        assert torch.equal(seen["text"][i], empty if dropped[i] else text[i]), i
    # A share near the probability over many samples (binomial: 1000 draws at p 0.5, sd 16).
    many = task.draw(torch.tensor([sample_seed(42, k) for k in range(1000)]), (1,))[3]
    assert 430 < int(many.sum()) < 570


@pytest.mark.parametrize("expert,low,high", [("high noise", 0.875, 1.0), ("low noise", 0.0, 0.875)])
def test_a14b_expert_draws_only_its_sigma_range(expert, low, high):
    task = task_with(sigma_sampling="logit_normal", shift=12.0, sigma_low=low, sigma_high=high)
    sigma, _, _, _ = task.draw(torch.arange(4000), (1,))
    assert float(sigma.min()) >= low and float(sigma.max()) < high, expert
    # Shift 12 puts most mass near the top of each range (the exact distribution is checked against the
    # truncated shifted CDF in test_flow_matching.py); the draw reaches it, nothing piles up on a bound.
    assert float(sigma.max()) > high - 0.02 and float((sigma == low).float().mean()) < 0.01


def test_clean_first_frame_keeps_x0_timestep_zero_and_no_loss():
    torch.manual_seed(0)
    model = WanTransformer3DModel(tiny_config())
    seen = {}

    def spy(module, args):
        seen["x"], seen["t"] = args[0].clone(), args[1].clone()
    model.register_forward_pre_hook(spy)
    latents, noise, text = torch.randn(2, 4, 3, 8, 8), torch.randn(2, 4, 3, 8, 8), torch.randn(2, 5, 16)
    sigma, clean = torch.tensor([0.7, 0.4]), torch.tensor([True, False])
    loss = flow_matching_loss(model, latents, text, sigma, noise, normalizer=2.0, clean_first_frame=clean)
    per_frame = 4 * 4  # 8 x 8 latents, (1, 2, 2) patches
    assert torch.equal(seen["x"][0, :, 0], latents[0, :, 0])  # sample 0's first frame is clean
    assert torch.allclose(seen["x"][0, :, 1], 0.3 * latents[0, :, 1] + 0.7 * noise[0, :, 1])
    assert torch.allclose(seen["x"][1, :, 0], 0.6 * latents[1, :, 0] + 0.4 * noise[1, :, 0])
    assert seen["t"].shape == (2, 3 * per_frame)
    assert (seen["t"][0, :per_frame] == 0).all() and (seen["t"][0, per_frame:] == 700).all()
    assert (seen["t"][1] == 400).all()
    with torch.no_grad():
        out = model(seen["x"], seen["t"], text)
    error = (out - (noise - latents)).pow(2)
    want = (error[0, :, 1:].mean() + error[1].mean()) / 2  # sample 0 without its first frame
    torch.testing.assert_close(loss.detach(), want)


@pytest.mark.parametrize("task,sections,message", [
    ({}, {}, "task.vae: missing; online encoding needs"),
    ({"features": "/nonexistent"}, {}, "task.features: .*nonexistent has no index.json"),
    ({"vae": "data", "text_encoder": "data", "tokenizer": "data", "num_frames": 80}, {},
     "task.num_frames: 80 must be 4n"),
    ({"vae": "data", "text_encoder": "data", "tokenizer": "data", "sigma_low": 0.9, "sigma_high": 0.5}, {},
     "task.sigma_low/sigma_high"),
    ({"vae": "data", "text_encoder": "data", "tokenizer": "data", "text_drop_prob": 1.5}, {},
     r"task.text_drop_prob: 1.5 is a probability in \[0, 1\]"),
    ({"vae": "data", "text_encoder": "data", "tokenizer": "data", "shfit": 3}, {}, "task.shfit: unknown key; did you "
     "mean 'shift'"),
    ({"vae": "data", "text_encoder": "data", "tokenizer": "data"}, {"data": {"packing": True}}, "data.packing: not"),
    ({"vae": "data", "text_encoder": "data", "tokenizer": "data"}, {"data": {"dataset": "alpaca_sample"}},
     "formatting 'alpaca'; Wan trains on video rows"),
])
def test_task_section_errors_name_the_key(task, sections, message):
    cfg = config(task, **sections)
    with pytest.raises(ConfigError, match=message):
        FlowMatchingTask.check_config(cfg, None, tiny_config())


I2V = dict(in_channels=10, out_channels=4, image_dim=20, added_kv_proj_dim=24)  # tiny: latents 4 + mask 2 + condition 4


def i2v_config(task: dict, features: bool = False):
    paths = {} if features else {"vae": "data", "text_encoder": "data", "tokenizer": "data"}
    return config({**paths, **task})


@pytest.mark.parametrize("dit,task,message", [
    (I2V, {}, "task.image_encoder: missing; Wan2.1 I2V reads CLIP image tokens"),
    (dict(in_channels=10, out_channels=4), {"image_encoder": "data", "image_processor": "data"},
     r"task.image_encoder: Wan2.2 I2V-A14B has no image tokens"),
    ({}, {"image_encoder": "data", "image_processor": "data"}, "task.image_encoder: only Wan2.1 image-to-video"),
    (I2V, {"image_encoder": "data"}, "task.image_encoder and task.image_processor come together"),
    (I2V, {"image_encoder": "data", "image_processor": "data", "first_frame_clean": 0.5},
     "task.first_frame_clean: Wan2.2 TI2V-5B's clean first frame"),
])
def test_task_section_fits_the_dit(dit, task, message):
    with pytest.raises(ConfigError, match=message):
        FlowMatchingTask.check_config(i2v_config(task), None, tiny_config(**dit))


def test_text_to_video_features_are_refused_for_an_i2v_dit(tmp_path, tiny_encoders):
    from shardzoo_wan.extract import main
    from shardzoo_wan.tiny_encoders import extract_args

    main(extract_args(tiny_encoders, REPO / "data/video_sample.json", tmp_path / "t2v"))
    with pytest.raises(ConfigError, match=r"task.features: .*t2v has no condition latents.*--image-to-video"):
        FlowMatchingTask.check_config(i2v_config({"features": str(tmp_path / "t2v")}, features=True), None,
                                      tiny_config(**I2V))
    from shardzoo_wan.image_to_video import check_channels
    with pytest.raises(ConfigError, match=r"the latents have 4 channels and a 4-channel first-frame mask, so the "
                                          r"DiT's in_channels would be 12, but it is 10"):
        check_channels(4, 4, tiny_config(**I2V))


def test_configs_find_the_package_without_model_id():
    from shardzoo.registry import find_spec
    from shardzoo_wan.configuration_wan import WanConfig
    from shardzoo_wan.spec import SPEC

    # A released diffusers config.json names the class in _class_name; the package claiming it is found
    # (in a copy made by `shardzoo new-model`, the released file stays the reference's: the copy's claim
    # is checked on its fields).
    diffusers_cfg = json.loads((REPO / "models/wan/configs/wan2.1-t2v-1.3b/config.json").read_text())
    assert find_spec(None, {**diffusers_cfg, "_class_name": SPEC.architectures[0]}).name == "wan"
    # The original Wan config.json (Wan-AI/Wan2.1-T2V-1.3B) names WanModel and the original fields.
    original = {"_class_name": "WanModel", "_diffusers_version": "0.30.0", "dim": 1536, "eps": 1e-06,
                "ffn_dim": 8960, "freq_dim": 256, "in_dim": 16, "model_type": "t2v", "num_heads": 12,
                "num_layers": 30, "out_dim": 16, "text_len": 512}
    assert find_spec(None, original).name == "wan"
    assert WanConfig.from_dict(original) == WanConfig.from_dict(diffusers_cfg)
    with pytest.raises(ConfigError, match="model_type 'i2v'"):
        WanConfig.from_dict({**original, "model_type": "i2v"})
