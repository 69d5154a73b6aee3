"""Wan DiT training step, ours vs diffusers' WanTransformer3DModel (the shared harness, shardzoo.bench.step).

    python models/wan/benchmarks/bench_step.py [--preset cpu] [--device cuda]

Both sides train the flow-matching loss on the same batch (x_t = (1 - sigma) x0 + sigma noise,
t = 1000 sigma, MSE against noise - x0), with SDPA attention. `seq` is the video tokens of the
latent (frames x (size / 2)^2), which the preset's frames and size fix.
"""

from __future__ import annotations

import torch
from shardzoo.bench.step import Goal, Preset, Side, StepBenchmark, main
from shardzoo.device import CUDA, NPU

CONFIG = dict(patch_size=(1, 2, 2), num_attention_heads=8, attention_head_dim=64, in_channels=16, out_channels=16,
              text_dim=512, freq_dim=256, ffn_dim=1536, num_layers=4, cross_attn_norm=True,
              qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024)
# 5 latent frames of 32 x 32 (1280 video tokens) and 64 text tokens.
PRESETS = {
    "cpu": Preset(CONFIG, seq=5 * 16 * 16, extra={"latent": [16, 5, 32, 32], "text_tokens": 64}),
    # For tests/test_benchmarks.py: the harness end to end in a second.
    "tiny": Preset(dict(CONFIG, num_attention_heads=2, attention_head_dim=32, text_dim=32, freq_dim=32, ffn_dim=128,
                        num_layers=1), seq=2 * 4 * 4, extra={"latent": [16, 2, 8, 8], "text_tokens": 8}),
    # Wan2.1-T2V-1.3B as released (configs/wan2.1-t2v-1.3b/config.json) on a 480 x 832, 17-frame clip:
    # 5 latent frames of 60 x 104 (7800 video tokens) and 512 text tokens.
    "1.3b": Preset(dict(CONFIG, num_attention_heads=12, attention_head_dim=128, text_dim=4096, ffn_dim=8960,
                        num_layers=30), seq=5 * 30 * 52, batch=1,
                   extra={"latent": [16, 5, 60, 104], "text_tokens": 512}),
}


def build(preset: Preset, side: str, dtype: torch.dtype) -> Side:
    from diffusers import WanTransformer3DModel as Diffusers
    from shardzoo_wan import WanConfig, WanTransformer3DModel
    from shardzoo_wan.flow_matching import flow_matching_loss

    channels, frames, height, width = preset.extra["latent"]
    if frames * (height // 2) * (width // 2) != preset.seq:
        raise SystemExit(f"--seq: the Wan preset's video tokens are fixed by its latent {preset.extra['latent']}")
    b = preset.batch
    latents = torch.randn(b, channels, frames, height, width)
    noise = torch.randn_like(latents)
    text = torch.randn(b, preset.extra["text_tokens"], preset.config["text_dim"], dtype=dtype)
    sigma = torch.full((b,), 0.6)
    if side == "reference":
        model = Diffusers(**preset.config)
        return Side(model, lambda: flow_matching_loss(lambda x, t, c: model(x, t, c).sample,
                                                      latents, text, sigma, noise, float(b), dtype=dtype))
    model = WanTransformer3DModel(WanConfig(**preset.config))
    return Side(model, lambda: flow_matching_loss(model, latents, text, sigma, noise, float(b), dtype=dtype))


BENCHMARK = StepBenchmark(
    model="wan", reference="diffusers", presets=PRESETS, build=build, blocks=("blocks.{*}",),
    describe="both: flow-matching MSE through the DiT (SDPA); ours: shardzoo_wan.WanTransformer3DModel; "
             "diffusers: WanTransformer3DModel",
    goals=(Goal("step_time", 1.0),), steps=9, default_preset={CUDA: "1.3b", NPU: "1.3b"})


if __name__ == "__main__":
    main(BENCHMARK)
