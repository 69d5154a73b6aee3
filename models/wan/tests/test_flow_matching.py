"""The flow-matching objective: the shift and its inverse, sigma drawn exactly from the (truncated,
shifted) base distribution, and the loss against v = noise - x0 at t = 1000 sigma."""

from __future__ import annotations

import math

import pytest
import torch
from shardzoo.parallel.materialize import init_parameters
from shardzoo_wan import WanTransformer3DModel, init_fn, tiny_config
from shardzoo_wan.flow_matching import SigmaSampler, flow_matching_loss, shift_sigma, unshift_sigma


def test_shift_and_inverse():
    sigma = torch.linspace(0, 1, 11, dtype=torch.float64)
    assert shift_sigma(torch.tensor(0.5), 3.0) == pytest.approx(0.75)
    torch.testing.assert_close(unshift_sigma(shift_sigma(sigma, 5.0), 5.0), sigma)


def _empirical_cdf(samples: torch.Tensor, x: float) -> float:
    return float((samples < x).double().mean())


@pytest.mark.parametrize("sampler", [
    SigmaSampler("uniform", shift=3.0),
    SigmaSampler("logit_normal", logit_mean=0.0, logit_std=1.0, shift=1.0),
    SigmaSampler("logit_normal", logit_mean=0.5, logit_std=0.8, shift=5.0, low=0.875),  # A14B high-noise expert
    SigmaSampler("uniform", shift=12.0, high=0.875),  # A14B low-noise expert
], ids=["uniform-shift3", "logit-normal", "high-noise-expert", "low-noise-expert"])
def test_samples_follow_the_truncated_shifted_distribution(sampler):
    samples = sampler.sample(40000, torch.Generator().manual_seed(0)).double()
    assert samples.min() >= sampler.low and samples.max() < sampler.high
    # Analytic CDF of the shifted base restricted to [low, high): F(x) = (G(u(x)) - G(u(low))) / (G(u(high)) - ...)
    base = [sampler._base_cdf(float(unshift_sigma(torch.tensor(v, dtype=torch.float64), sampler.shift)))
            for v in (sampler.low, sampler.high)]
    worst = 0.0
    for x in torch.linspace(sampler.low, sampler.high, 41)[1:-1].tolist():
        g = sampler._base_cdf(float(unshift_sigma(torch.tensor(x, dtype=torch.float64), sampler.shift)))
        worst = max(worst, abs(_empirical_cdf(samples, x) - (g - base[0]) / (base[1] - base[0])))
    # Kolmogorov-Smirnov: 1.63 / sqrt(n) is the 1% critical value; a wrong shift or truncation is off by > 0.05.
    assert worst < 1.63 / math.sqrt(len(samples))


def test_bad_ranges_are_refused():
    with pytest.raises(ValueError, match=r"sigma range \[0.9, 0.5\)"):
        SigmaSampler(low=0.9, high=0.5)


def test_loss_targets_noise_minus_data_at_t_1000_sigma():
    config = tiny_config()
    model = WanTransformer3DModel(config)
    init_parameters(model, 0, init_fn(config))
    gen = torch.Generator().manual_seed(1)
    latents, noise = torch.randn(2, 4, 3, 8, 8, generator=gen), torch.randn(2, 4, 3, 8, 8, generator=gen)
    text, sigma = torch.randn(2, 8, 16, generator=gen), torch.tensor([0.25, 0.9])
    # The zero-initialised output projection predicts 0: the loss is the mean of (noise - x0)^2 per sample.
    loss = flow_matching_loss(model, latents, text, sigma, noise, normalizer=2.0)
    want = (noise - latents).pow(2).flatten(1).mean(1).sum() / 2
    torch.testing.assert_close(loss, want)
    # With trained weights the model sees x_t = (1 - sigma) x0 + sigma noise and t = 1000 sigma.
    with torch.no_grad():
        model.proj_out.weight.normal_(0, 0.1)
    s = sigma.view(-1, 1, 1, 1, 1)
    pred = model((1 - s) * latents + s * noise, sigma * 1000, text)
    want = (pred - (noise - latents)).pow(2).flatten(1).mean(1).sum() / 4
    torch.testing.assert_close(flow_matching_loss(model, latents, text, sigma, noise, normalizer=4.0), want)
