"""The frozen encoders in front of the Wan DiT: umT5 (transformers) for the prompt and the Wan VAE
(diffusers) for the video. Used online, or once by the feature extraction (extract.py) whose
shards large runs train on."""

from __future__ import annotations

import torch
import torch.nn as nn


def frozen(module: nn.Module) -> nn.Module:
    module.requires_grad_(False)
    return module.eval()


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
