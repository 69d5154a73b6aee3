"""Rectified-flow training objective of Wan (docs/model_facts.md §6).

    sigma ~ the sampler;  x_t = (1 - sigma) x0 + sigma noise;  target v = noise - x0
    prediction = DiT(x_t, t = 1000 sigma, text);  loss = mean squared error against v

Sigma comes from a base distribution (uniform, or logit-normal: sigmoid of N(mean, std)), then the
SD3-style shift sigma' = s sigma / (1 + (s - 1) sigma). Wan2.2 A14B trains its two experts on their
own ranges of the shifted sigma (high noise [boundary, 1], low noise [0, boundary)): the sampler
draws exactly from the base distribution restricted to that range (inverse CDF), no rejection.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Optional

import torch
import torch.nn as nn

from .image_to_video import dit_input, mask_channels


def shift_sigma(sigma: torch.Tensor, shift: float) -> torch.Tensor:
    return shift * sigma / (1 + (shift - 1) * sigma)


def unshift_sigma(sigma: torch.Tensor, shift: float) -> torch.Tensor:
    """The inverse of shift_sigma."""
    return sigma / (shift - (shift - 1) * sigma)


_NORMAL = torch.distributions.Normal(0.0, 1.0)


@dataclass(frozen=True)
class SigmaSampler:
    kind: Literal["uniform", "logit_normal"] = "logit_normal"
    logit_mean: float = 0.0
    logit_std: float = 1.0
    shift: float = 1.0
    low: float = 0.0
    """Shifted sigma range [low, high): a Wan2.2 A14B expert's share of the noise levels."""
    high: float = 1.0

    def __post_init__(self):
        if not 0.0 <= self.low < self.high <= 1.0:
            raise ValueError(f"sigma range [{self.low}, {self.high}) must lie in [0, 1] and not be empty")
        if self.shift <= 0 or self.logit_std <= 0:
            raise ValueError(f"shift ({self.shift}) and logit_std ({self.logit_std}) must be positive")

    def _base_cdf(self, sigma: float) -> float:
        if self.kind == "uniform":
            return sigma
        if sigma <= 0.0 or sigma >= 1.0:
            return float(sigma >= 1.0)
        z = (math.log(sigma / (1 - sigma)) - self.logit_mean) / self.logit_std
        return float(_NORMAL.cdf(torch.tensor(z)))

    def sample(self, n: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """[n] shifted sigmas in [low, high), fp32 on the CPU."""
        bounds = [self._base_cdf(float(unshift_sigma(torch.tensor(x, dtype=torch.float64), self.shift)))
                  for x in (self.low, self.high)]
        p = bounds[0] + (bounds[1] - bounds[0]) * torch.rand(n, generator=generator, dtype=torch.float64)
        if self.kind == "uniform":
            base = p
        else:
            base = torch.sigmoid(self.logit_mean + self.logit_std * _NORMAL.icdf(p.clamp(1e-12, 1 - 1e-12)))
        sigma = shift_sigma(base, self.shift)
        return sigma.clamp(self.low, math.nextafter(self.high, 0.0)).float()


def flow_matching_loss(model: nn.Module, latents: torch.Tensor, text: torch.Tensor, sigma: torch.Tensor,
                       noise: torch.Tensor, normalizer: float | torch.Tensor, weights: Optional[torch.Tensor] = None,
                       clean_first_frame: Optional[torch.Tensor] = None, dtype: Optional[torch.dtype] = None,
                       condition: Optional[torch.Tensor] = None, image: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Sum over samples of each sample's mean squared error against v = noise - latents (times its
    `weights`, 0 for a filler sample), divided by `normalizer` (the step's sample count over
    micro-batches and ranks, as the trainer's token count for language models: any split of the
    samples then gives the same update). x_t and the target are formed in fp32 and the model input
    cast to `dtype` (the DiT's compute dtype).

    `clean_first_frame` [B] marks Wan2.2 TI2V image-to-video samples: their first latent frame stays
    the clean x0, its tokens get timestep 0 (a [B, L] per-token timestep), and it is left out of their
    loss, as the sampler overwrites that frame with the condition at every step.

    `condition` [B, z, T', H', W'] are an image-to-video sample's first-frame latents: the DiT reads
    cat(x_t, first-frame mask, condition) (image_to_video.py) and predicts v for the z channels; `image`
    [B, L, d] are Wan2.1 I2V's CLIP image tokens."""
    latents, noise = latents.float(), noise.float()
    s = sigma.float().view(-1, *([1] * (latents.ndim - 1)))
    noisy = (1 - s) * latents + s * noise
    timestep = sigma.float() * 1000
    frame_weight = None
    if clean_first_frame is not None and bool(clean_first_frame.any()):
        b, _, frames, height, width = latents.shape
        pt, ph, pw = model.patch_size
        clean = clean_first_frame.view(b, 1, 1, 1, 1)
        noisy = torch.cat([torch.where(clean, latents[:, :, :1], noisy[:, :, :1]), noisy[:, :, 1:]], dim=2)
        per_frame = (height // ph) * (width // pw)
        first = torch.arange(frames // pt * per_frame, device=latents.device) < per_frame  # tokens of latent frame 0
        timestep = torch.where(clean_first_frame[:, None] & first[None], 0.0, timestep[:, None])
        frame_weight = torch.ones(b, 1, frames, 1, 1, device=latents.device)
        frame_weight[:, :, 0] = (~clean_first_frame).float().view(b, 1, 1, 1)
    if condition is not None:
        noisy = dit_input(noisy, condition, mask_channels(model.config))
    if dtype is not None:
        noisy, text = noisy.to(dtype), text.to(dtype)
        image = None if image is None else image.to(dtype)
    prediction = model(noisy, timestep, text) if image is None else model(noisy, timestep, text, image)
    error = (prediction.float() - (noise - latents)).pow(2)
    if frame_weight is None:
        per_sample = error.flatten(1).mean(1)
    else:
        per_sample = (error * frame_weight).flatten(1).sum(1) / frame_weight.expand_as(error).flatten(1).sum(1)
    if weights is not None:
        per_sample = per_sample * weights
    return per_sample.sum() / normalizer
