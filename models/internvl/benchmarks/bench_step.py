"""One small InternVL training step, ours vs transformers' InternVLForConditionalGeneration, on this
machine's CPU.

    python models/internvl/benchmarks/bench_step.py [--steps 3] [--seq 1024] [--tiles 2] [--out results.json]

Both sides start from the same weights and run forward, backward and an AdamW step on the same
batch (fp32, batch 1: `--tiles` 448 px tiles = 256 image tokens each, then text), steps alternated
in one process, median reported. Ours: the model under the causal-LM task (chunked linear + CE,
SDPA). Theirs: forward with labels (SDPA attention in both towers, full fp32 logits).
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch
from shardzoo.config import OpsConfig
from shardzoo.testing.bench import optimizer_step, time_alternating

TEXT = dict(model_type="qwen3", vocab_size=151936, hidden_size=256, intermediate_size=768, num_hidden_layers=4,
            num_attention_heads=4, num_key_value_heads=2, head_dim=64, rope_theta=1e6, tie_word_embeddings=False)
VISION = dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024, image_size=448,
              patch_size=14, attention_bias=True, use_qk_norm=False, norm_type="layer_norm", layer_norm_eps=1e-6)
IMAGE_TOKEN = 151671


def main() -> None:
    from shardzoo.train.task import CausalLMTask
    from shardzoo_internvl import InternVLForConditionalGeneration, tiny_config
    from transformers import InternVLForConditionalGeneration as HF

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--tiles", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    config = tiny_config(text_config=TEXT, vision_config=VISION, image_token_id=IMAGE_TOKEN, image_seq_length=256)
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    hf = HF(config).train()
    ours = InternVLForConditionalGeneration(config)
    ours.load_state_dict(hf.state_dict())
    ids = torch.randint(0, 150000, (1, args.seq))
    ids[0, 1:1 + 256 * args.tiles] = IMAGE_TOKEN
    pixels = torch.randn(args.tiles, 3, 448, 448)
    labels = ids.masked_fill(ids == IMAGE_TOKEN, -100)
    targets = torch.cat([labels[:, 1:], torch.full((1, 1), -100)], 1)
    n = float((targets != -100).sum())
    task = CausalLMTask(ours, chunk_size=OpsConfig().loss_chunk_size)
    opt_ours, opt_hf = torch.optim.AdamW(ours.parameters(), lr=1e-5), torch.optim.AdamW(hf.parameters(), lr=1e-5)
    first, median = time_alternating({
        "ours": lambda: optimizer_step(opt_ours, lambda: task(ids, targets, normalizer=n, pixel_values=pixels)),
        "hf": lambda: optimizer_step(opt_hf, lambda: hf(input_ids=ids, pixel_values=pixels, labels=labels).loss)},
        args.steps)
    result = {"benchmark": "internvl training step (fwd+bwd+AdamW), fp32, CPU",
              "config": {"text": TEXT, "vision": VISION, "seq": args.seq, "tiles": args.tiles, "batch": 1,
                         "steps": args.steps},
              "machine": f"{platform.machine()}, {torch.get_num_threads()} threads", "torch": torch.__version__,
              "first_step_loss": first,
              "step_time_s": {**median, "ratio": median["ours"] / median["hf"]}}
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
