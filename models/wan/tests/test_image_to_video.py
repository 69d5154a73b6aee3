"""Image-to-video conditioning: the mask and condition latents equal diffusers' WanImageToVideoPipeline's, the
CLIP tokens equal its encode_image, the loss feeds the DiT cat(x_t, mask, condition) and the image tokens, and
extraction records what it wrote (the task: section's checks are in test_task.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from shardzoo.errors import DataError
from shardzoo_wan import WanTransformer3DModel, tiny_config
from shardzoo_wan.encoders import VideoEncoder
from shardzoo_wan.flow_matching import flow_matching_loss
from shardzoo_wan.image_to_video import ImageEncoder, first_frame_mask, mask_channels
from shardzoo_wan.tiny_encoders import IMAGE_DIM, extract_args, tiny_clip, tiny_vae

REPO = Path(__file__).resolve().parents[3]
I2V = dict(in_channels=10, out_channels=4, image_dim=IMAGE_DIM, added_kv_proj_dim=24)  # tiny: 4 + 2 + 4


def test_mask_channels_of_the_released_configs():
    from shardzoo_wan.configuration_wan import WanConfig

    def released(name: str) -> WanConfig:
        return WanConfig.from_dict(json.loads((REPO / "models/wan/configs" / name / "config.json").read_text()))
    assert mask_channels(released("wan2.1-i2v-14b")) == 4 == mask_channels(released("wan2.2-i2v-a14b"))
    assert mask_channels(released("wan2.1-t2v-14b")) == 0 == mask_channels(released("wan2.2-ti2v-5b"))


def test_condition_and_mask_equal_the_diffusers_pipeline():
    """diffusers' WanImageToVideoPipeline.prepare_latents, run on the tiny VAE, builds the same mask and
    condition latents as ours from the clip's first frame."""
    from diffusers import WanImageToVideoPipeline

    torch.manual_seed(0)
    vae = tiny_vae()
    clip = torch.rand(1, 3, 5, 32, 32) * 2 - 1
    pipeline = SimpleNamespace(vae=vae, vae_scale_factor_temporal=2, vae_scale_factor_spatial=2,
                               config=SimpleNamespace(expand_timesteps=False))
    _, theirs = WanImageToVideoPipeline.prepare_latents(pipeline, clip[:, :, 0], 1, 4, 32, 32, 5,
                                                        dtype=torch.float32, device=torch.device("cpu"))
    ours = torch.cat([first_frame_mask(1, 2, (3, 16, 16)), VideoEncoder(vae).condition(clip)], dim=1)
    assert ours.shape == theirs.shape == (1, 6, 3, 16, 16)
    torch.testing.assert_close(ours, theirs)


def test_clip_tokens_equal_the_pipelines_image_encoding(tmp_path):
    """At the processor's size the tokens equal the pipeline's encode_image (PIL processor on the frame as
    8-bit pixels); a frame that needs resizing differs by the resize's rounding (PIL resizes 8-bit pixels,
    ours the float frame: measured within one 8-bit level)."""
    from diffusers import WanImageToVideoPipeline
    from shardzoo_wan.tiny_encoders import save_tiny_encoders
    from transformers import CLIPImageProcessor

    folder = save_tiny_encoders(tmp_path, REPO / "data/tokenizer")
    model = tiny_clip()
    encoder = ImageEncoder(model, folder / "image_processor")
    pipeline = SimpleNamespace(image_processor=CLIPImageProcessor.from_pretrained(folder / "image_processor"),
                               image_encoder=model)
    torch.manual_seed(0)
    for size, atol in (((32, 48), 1e-6), ((64, 96), 2 / 255 / 0.26)):
        levels = torch.randint(0, 256, (3, *size), dtype=torch.uint8)
        frame = levels.float() / 255 * 2 - 1
        theirs = WanImageToVideoPipeline.encode_image(pipeline, [levels.permute(1, 2, 0).numpy()], torch.device("cpu"))
        pixels = pipeline.image_processor(images=[levels.permute(1, 2, 0).numpy()], return_tensors="pt").pixel_values
        torch.testing.assert_close(encoder.preprocess(frame[None]), pixels, rtol=0, atol=atol)
        if atol < 1e-5:
            torch.testing.assert_close(encoder(frame[None]), theirs, rtol=1e-5, atol=1e-5)
    assert theirs.shape == (1, 17, IMAGE_DIM)


@pytest.mark.parametrize("clip", [True, False], ids=["wan2.1-i2v", "wan2.2-i2v (no CLIP)"])
def test_the_loss_feeds_noisy_latents_mask_condition_and_image_tokens(clip):
    torch.manual_seed(0)
    model = WanTransformer3DModel(tiny_config(**(I2V if clip else dict(in_channels=10, out_channels=4))))
    seen = {}
    model.register_forward_pre_hook(lambda module, args: seen.update(x=args[0].clone(), args=len(args),
                                                                     image=args[3].clone() if clip else None))
    latents, noise, condition = torch.randn(3, 2, 4, 3, 8, 8).unbind(0)
    text, sigma = torch.randn(2, 5, 16), torch.tensor([0.7, 0.2])
    image = torch.randn(2, 17, IMAGE_DIM) if clip else None
    loss = flow_matching_loss(model, latents, text, sigma, noise, 2.0, condition=condition, image=image)
    x = seen["x"]
    assert x.shape == (2, 10, 3, 8, 8) and seen["args"] == (4 if clip else 3)
    torch.testing.assert_close(x[:, :4], (1 - sigma.view(2, 1, 1, 1, 1)) * latents + sigma.view(2, 1, 1, 1, 1) * noise)
    assert (x[:, 4:6, 0] == 1).all() and (x[:, 4:6, 1:] == 0).all()  # the mask: latent frame 0 only
    assert torch.equal(x[:, 6:], condition)
    if clip:
        assert torch.equal(seen["image"], image)
    with torch.no_grad():  # the loss is over the 4 predicted channels, every frame
        out = model(x, sigma * 1000, text, image) if clip else model(x, sigma * 1000, text)
        want = (out - (noise - latents)).pow(2).flatten(1).mean(1).sum() / 2
    torch.testing.assert_close(loss.detach(), want)


def tiny_extraction(folder: Path, out: Path, image: bool = False) -> list[str]:
    return extract_args(folder, REPO / "data/video_sample.json", out, "--shard-size", "4", image=image)


def test_extraction_writes_conditions_and_refuses_other_settings_on_a_rerun(tmp_path, tiny_encoders):
    from shardzoo_wan.extract import FeatureStore, main
    from shardzoo_wan.video import load_clip

    main(tiny_extraction(tiny_encoders, tmp_path / "f", image=True))
    store = FeatureStore(tmp_path / "f")
    assert store.mask_channels == 2 and store.image_tokens and store.index["image_shape"] == [17, IMAGE_DIM]
    row = store.row(5, ("latents", "condition", "image"))
    rows = json.loads((REPO / "data/video_sample.json").read_text())
    clip = load_clip(REPO / "data" / rows[5]["video"], 5, 32, 32, 2)[None]
    torch.testing.assert_close(row["condition"], VideoEncoder(tiny_vae())(torch.cat(
        [clip[:, :, :1], torch.zeros_like(clip[:, :, 1:])], dim=2))[0])
    from transformers import CLIPVisionModel

    encoder = ImageEncoder(CLIPVisionModel.from_pretrained(tiny_encoders / "image_encoder"),
                           tiny_encoders / "image_processor")
    torch.testing.assert_close(row["image"], encoder(clip[:, :, 0])[0])
    # The same folder with other settings: its finished shards would mix two kinds of rows. The command says so
    # in one line (exit 2), as the shardzoo CLI does.
    with pytest.raises(DataError, match=r"features_00000.safetensors: written with other settings .* new --out"):
        main(tiny_extraction(tiny_encoders, tmp_path / "f"))
    rerun = tiny_extraction(tiny_encoders, tmp_path / "f")
    proc = subprocess.run([sys.executable, "-m", "shardzoo_wan.extract", *rerun], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[-1].startswith("data error: ")  # after transformers' loading bars
