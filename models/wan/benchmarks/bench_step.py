"""One small Wan DiT training step, ours vs diffusers' WanTransformer3DModel, on this machine's CPU.

    python models/wan/benchmarks/bench_step.py [--steps 3] [--frames 5] [--size 32] [--out results.json]

Both sides start from the same weights and run the flow-matching loss (x_t, t = 1000 sigma, MSE
against noise - x0), backward and an AdamW step on the same batch (fp32, batch 1), steps alternated
in one process, median reported. Both use SDPA attention.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch
from shardzoo.testing.bench import optimizer_step, time_alternating

CONFIG = dict(patch_size=(1, 2, 2), num_attention_heads=8, attention_head_dim=64, in_channels=16, out_channels=16,
              text_dim=512, freq_dim=256, ffn_dim=1536, num_layers=4, cross_attn_norm=True,
              qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024)


def main() -> None:
    from diffusers import WanTransformer3DModel as Diffusers
    from shardzoo_wan import WanConfig, WanTransformer3DModel
    from shardzoo_wan.flow_matching import flow_matching_loss

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--frames", type=int, default=5, help="latent frames")
    parser.add_argument("--size", type=int, default=32, help="latent height = width")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.manual_seed(0)
    theirs = Diffusers(**CONFIG).float().train()
    ours = WanTransformer3DModel(WanConfig(**CONFIG))
    ours.load_state_dict(theirs.state_dict())
    latents = torch.randn(1, 16, args.frames, args.size, args.size)
    noise, text, sigma = torch.randn_like(latents), torch.randn(1, 64, 512), torch.tensor([0.6])

    def diffusers_loss():
        return flow_matching_loss(lambda x, t, c: theirs(x, t, c).sample, latents, text, sigma, noise, 1.0)

    opt_ours = torch.optim.AdamW(ours.parameters(), lr=1e-5)
    opt_theirs = torch.optim.AdamW(theirs.parameters(), lr=1e-5)
    first, median = time_alternating({
        "ours": lambda: optimizer_step(opt_ours, lambda: flow_matching_loss(ours, latents, text, sigma, noise, 1.0)),
        "diffusers": lambda: optimizer_step(opt_theirs, diffusers_loss)}, args.steps)
    tokens = args.frames * (args.size // 2) ** 2
    result = {"benchmark": "wan DiT training step (flow matching fwd+bwd+AdamW), fp32, CPU",
              "config": {**CONFIG, "latent": [16, args.frames, args.size, args.size], "video_tokens": tokens,
                         "text_tokens": 64, "batch": 1, "steps": args.steps},
              "machine": f"{platform.machine()}, {torch.get_num_threads()} threads", "torch": torch.__version__,
              "first_step_loss": first,
              "step_time_s": {**median, "ratio": median["ours"] / median["diffusers"]}}
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
