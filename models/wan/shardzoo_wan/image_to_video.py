"""First-frame conditioning of the image-to-video DiTs (Wan2.1 I2V 14B, Wan2.2 I2V-A14B), as diffusers'
WanImageToVideoPipeline builds it:

    DiT input = cat(x_t [z], mask [m], condition [z]) over channels         (z 16 + m 4 + z 16 = 36)
    condition = the VAE latents of the clip's first frame followed by black (zero) frames, normalised
                like the latents (the causal VAE sees the same first frame, then nothing)
    mask      = 1 on latent frame 0, 0 after it, in m = the VAE's temporal factor channels (the pixel
                frames folded into each latent frame)
    Wan2.1 only: CLIP ViT-H/14's penultimate hidden states of the first frame (257 x 1280), the image
                tokens of every cross-attention

The loss is over the z channels the DiT predicts, on every latent frame (the first frame is conditioned
on, not given clean as in Wan2.2 TI2V-5B)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from shardzoo.errors import ConfigError


def mask_channels(config) -> int:
    """m of an image-to-video DiT config (in_channels = 2 z + m, out_channels = z); 0 for the others."""
    out = config.out_channels or config.in_channels
    return config.in_channels - 2 * out if config.in_channels > out else 0


def first_frame_mask(batch: int, channels: int, latent_shape: tuple[int, int, int],
                     device: torch.device | None = None) -> torch.Tensor:
    """[batch, channels, T', H', W']: 1 on latent frame 0, 0 elsewhere."""
    mask = torch.zeros(batch, channels, *latent_shape, device=device)
    mask[:, :, 0] = 1.0
    return mask


def condition_clips(clips: torch.Tensor) -> torch.Tensor:
    """Clips [B, 3, T, H, W] -> the same shape: the first frame, then zeros (mid-grey in [-1, 1])."""
    return torch.cat([clips[:, :, :1], torch.zeros_like(clips[:, :, 1:])], dim=2)


def dit_input(noisy: torch.Tensor, condition: torch.Tensor, channels: int) -> torch.Tensor:
    """cat(x_t, the mask in `channels` channels, the condition latents [B, z, T', H', W']) over channels."""
    mask = first_frame_mask(noisy.shape[0], channels, tuple(noisy.shape[2:]), noisy.device)
    return torch.cat([noisy, mask, condition.float()], dim=1)


class ImageEncoder:
    """First frames [B, 3, H, W] in [-1, 1] -> CLIP image tokens [B, L, d]: the vision tower's
    penultimate hidden states (diffusers' encode_image), after CLIP's preprocessing as the processor's
    config states it (shortest edge resized, bicubic, centre crop, mean / std), done in torch on the
    frames' device: the pipeline's PIL resize of a full-size image rounds differently, and training
    sees the clip's resized frame, not the source image."""

    def __init__(self, model: nn.Module, processor_folder: str | Path):
        from .encoders import frozen

        self.model = frozen(model)
        path = Path(processor_folder) / "preprocessor_config.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: the CLIP image processor's config (the Wan2.1 I2V repo's "
                                    "image_processor/) is missing")
        p = json.loads(path.read_text())
        size = p.get("size", {})
        self.shortest_edge = size.get("shortest_edge") if isinstance(size, dict) else size
        crop = p.get("crop_size", {})
        self.crop = (crop["height"], crop["width"]) if isinstance(crop, dict) else (crop, crop)
        self.mean = torch.tensor(p["image_mean"]).view(1, 3, 1, 1)
        self.std = torch.tensor(p["image_std"]).view(1, 3, 1, 1)

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        x = (frames.float() + 1) / 2  # [0, 1], what the processor sees after rescaling
        h, w = x.shape[-2:]
        if self.shortest_edge:
            scale = self.shortest_edge / min(h, w)
            size = (max(self.shortest_edge, round(h * scale)), max(self.shortest_edge, round(w * scale)))
            x = F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True)
        ch, cw = self.crop
        top, left = (x.shape[-2] - ch) // 2, (x.shape[-1] - cw) // 2
        x = x[..., top:top + ch, left:left + cw]
        return (x - self.mean.to(x.device)) / self.std.to(x.device)

    @torch.no_grad()
    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        pixels = self.preprocess(frames).to(self.model.dtype)
        return self.model(pixel_values=pixels, output_hidden_states=True).hidden_states[-2].float()


def image_to_video_fields(hf_config) -> tuple[str, ...]:
    """What an image-to-video DiT reads besides latents and text."""
    if not mask_channels(hf_config):
        return ()
    return ("condition", "image") if hf_config.image_dim is not None else ("condition",)


def check_image_to_video(o, hf_config) -> None:
    """The task section against the DiT: conditioning inputs exactly when the DiT reads them."""
    if not mask_channels(hf_config):
        if o.image_encoder is not None:
            raise ConfigError("task.image_encoder: only Wan2.1 image-to-video DiTs (image_dim set) read CLIP image "
                              "tokens; remove it")
        return
    if o.first_frame_clean:
        raise ConfigError("task.first_frame_clean: Wan2.2 TI2V-5B's clean first frame; an image-to-video DiT "
                          f"(in_channels {hf_config.in_channels}) is conditioned on the first frame instead; remove it")
    wants_image = hf_config.image_dim is not None
    if o.features is not None:
        from .video_batches import FeatureRows

        store = FeatureRows(o.features, o.text_len).store
        if not store.mask_channels:
            raise ConfigError(f"task.features: {store.folder} has no condition latents, which the image-to-video DiT "
                              "reads; extract with --image-to-video" + (" and --image-encoder" if wants_image else ""))
        if wants_image and not store.image_tokens:
            raise ConfigError(f"task.features: {store.folder} has no CLIP image tokens, which Wan2.1 I2V reads; "
                              "extract with --image-encoder and --image-processor")
    elif wants_image and o.image_encoder is None:
        raise ConfigError("task.image_encoder: missing; Wan2.1 I2V reads CLIP image tokens: give task.image_encoder "
                          "and task.image_processor (the repo's image_encoder/ and image_processor/ folders)")
    elif not wants_image and o.image_encoder is not None:
        raise ConfigError("task.image_encoder: Wan2.2 I2V-A14B has no image tokens (image_dim null); remove it")


def check_channels(latent_channels: int, mask: int, hf_config) -> None:
    """The DiT's in/out channels against the latents (and an image-to-video DiT's mask)."""
    want = 2 * latent_channels + mask if mask_channels(hf_config) else latent_channels
    if hf_config.in_channels != want or (hf_config.out_channels or hf_config.in_channels) != latent_channels:
        what = f"{latent_channels} channels" + (f" and a {mask}-channel first-frame mask" if mask else "")
        raise ConfigError(f"task: the latents have {what}, so the DiT's in_channels would be {want}, but it is "
                          f"{hf_config.in_channels} (out_channels {hf_config.out_channels}); use the VAE (or "
                          "features) the model was trained with")
