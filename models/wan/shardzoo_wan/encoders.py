"""The frozen encoders in front of the Wan DiT: umT5 (transformers) for the prompt and the Wan VAE
(diffusers) for the video (and Wan2.1 I2V's CLIP, image_to_video.py). Used online (OnlineEncoders, beside
the training task), or once by the feature extraction (extract.py) whose shards large runs train on."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn


def frozen(module: nn.Module) -> nn.Module:
    module.requires_grad_(False)
    return module.eval()


def latent_shape(vae_config: dict, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
    """[C, T', H', W'] of a clip's latents, from the Wan VAE's config (a dict) and its structure: each
    temporal downsampling halves the frames after the first (T' = (T - 1) / 2^k + 1), each level after
    the first halves the size, and the Wan2.2 VAE first folds `patch_size` x `patch_size` pixels into
    channels."""
    temporal = temporal_factor(vae_config)
    spatial = 2 ** (len(vae_config["dim_mult"]) - 1) * (vae_config.get("patch_size") or 1)
    if (frames - 1) % temporal or height % spatial or width % spatial:
        raise ValueError(f"video size {frames} x {height} x {width}: the Wan VAE needs frames = {temporal}n + 1 and "
                         f"height, width divisible by {spatial}")
    return vae_config["z_dim"], (frames - 1) // temporal + 1, height // spatial, width // spatial


def temporal_factor(vae_config: dict) -> int:
    """Pixel frames per latent frame after the first (4 in the Wan VAEs): an image-to-video DiT's mask
    channels."""
    return 2 ** sum(bool(x) for x in vae_config["temperal_downsample"])


class TextEncoder:
    """Prompts -> [B, text_len, d_model] as Wan feeds its DiT: the umT5 last hidden state of the true
    tokens, zero-padded to text_len (512 in every release). The DiT attends to the padding without a
    mask, so the zeros (not the encoder's padding outputs) are part of the reference numerics."""

    def __init__(self, model: nn.Module, tokenizer, text_len: int = 512):
        self.model, self.tokenizer, self.text_len = frozen(model), tokenizer, text_len

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(states [B, text_len, d] zero-padded, true token counts [B])."""
        batch = self.tokenizer(prompts, padding="max_length", max_length=self.text_len, truncation=True,
                               add_special_tokens=True, return_tensors="pt")
        device = next(self.model.parameters()).device
        mask = batch["attention_mask"].to(device)
        hidden = self.model(input_ids=batch["input_ids"].to(device), attention_mask=mask).last_hidden_state
        return hidden * mask[..., None].to(hidden.dtype), mask.sum(1)

    def __call__(self, prompts: list[str]) -> torch.Tensor:
        return self.encode(prompts)[0]


class VideoEncoder:
    """Clips [B, 3, T, H, W] in [-1, 1] -> the latents the DiT trains on: the VAE posterior mean,
    normalised per channel with the VAE config's latents_mean / latents_std."""

    def __init__(self, vae: nn.Module):
        self.vae = frozen(vae)
        config = vae.config
        if config.latents_mean is None or config.latents_std is None:
            raise ValueError("Wan VAE config: latents_mean / latents_std are missing; use the Wan VAE's config.json")
        self.mean = torch.tensor(config.latents_mean).view(1, -1, 1, 1, 1)
        self.std = torch.tensor(config.latents_std).view(1, -1, 1, 1, 1)

    @torch.no_grad()
    def __call__(self, clips: torch.Tensor) -> torch.Tensor:
        mu = self.vae.encode(clips.to(self.vae.dtype)).latent_dist.mean.float()
        return (mu - self.mean.to(mu.device)) / self.std.to(mu.device)

    def condition(self, clips: torch.Tensor) -> torch.Tensor:
        """An image-to-video sample's condition latents: the first frame followed by zero frames, encoded."""
        from .image_to_video import condition_clips

        return self(condition_clips(clips))


class OnlineEncoders:
    """The frozen umT5 and VAE (and Wan2.1 I2V's CLIP), outside the task's module tree (not trained,
    sharded or saved)."""

    def __init__(self, o, image_to_video: bool = False):
        from diffusers import AutoencoderKLWan
        from shardzoo.config import resolve_path
        from transformers import AutoTokenizer, UMT5EncoderModel

        dtype = torch.bfloat16 if o.encoder_dtype == "bf16" else torch.float32
        self.video = VideoEncoder(AutoencoderKLWan.from_pretrained(str(resolve_path(o.vae)), torch_dtype=dtype))
        self.text = TextEncoder(UMT5EncoderModel.from_pretrained(str(resolve_path(o.text_encoder)), dtype=dtype),
                                AutoTokenizer.from_pretrained(str(resolve_path(o.tokenizer))), o.text_len)
        self.image_to_video, self.image = image_to_video, None
        if o.image_encoder is not None:
            from transformers import CLIPVisionModel

            from .image_to_video import ImageEncoder

            self.image = ImageEncoder(CLIPVisionModel.from_pretrained(str(resolve_path(o.image_encoder)), dtype=dtype),
                                      resolve_path(o.image_processor))
        self.device: Optional[torch.device] = None

    def to(self, device: torch.device) -> None:
        if self.device != device:
            for model in (self.video.vae, self.text.model, self.image and self.image.model):
                if model is not None:
                    model.to(device)
            self.device = device

    def __call__(self, clips: torch.Tensor, prompts: list[str]) -> dict:
        """latents, text, and for an image-to-video DiT the condition latents and CLIP image tokens."""
        self.to(clips.device)
        encoded = {"latents": self.video(clips), "text": self.text(prompts).float()}
        if self.image_to_video:
            encoded["condition"] = self.video.condition(clips)
        if self.image is not None:
            encoded["image"] = self.image(clips[:, :, 0])
        return encoded

    def empty_text(self) -> torch.Tensor:
        """The empty prompt's states [text_len, d], as the features' extraction stores them."""
        return self.text([""])[0].float().cpu()
