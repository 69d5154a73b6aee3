"""One tiny GPT-OSS training step, ours vs transformers' GptOssForCausalLM, on this machine's CPU.

    python models/gpt_oss/benchmarks/bench_step.py [--steps 3] [--seq 1024] [--out results.json]

Both sides start from the same weights and run forward, backward and an AdamW step on the same
batch (fp32, batch 1), alternating steps in one process; the median step time is reported. Ours:
the model under the causal-LM task (chunked linear + CE, SDPA with sinks, torch._grouped_mm
experts). Theirs: forward with labels, eager attention (GPT-OSS does not support SDPA) and the
experts implementation transformers picks by default (grouped_mm), full fp32 logits.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch
from shardzoo.config import OpsConfig
from shardzoo.testing.bench import optimizer_step, time_alternating

CONFIG = dict(vocab_size=201088, hidden_size=256, intermediate_size=256, num_hidden_layers=4, num_attention_heads=8,
              num_key_value_heads=2, head_dim=32, num_local_experts=8, num_experts_per_tok=2, sliding_window=128,
              max_position_embeddings=131072, rms_norm_eps=1e-5, tie_word_embeddings=False, pad_token_id=199999)


def main() -> None:
    from shardzoo.train.task import CausalLMTask
    from shardzoo_gpt_oss import GptOssForCausalLM
    from transformers import GptOssConfig
    from transformers import GptOssForCausalLM as HF

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    config = GptOssConfig(**CONFIG)
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    hf = HF(config).train()
    ours = GptOssForCausalLM(config)
    ours.load_state_dict(hf.state_dict())
    ids = torch.randint(0, 199000, (1, args.seq))
    targets = torch.cat([ids[:, 1:], torch.full((1, 1), -100)], 1)
    n = float((targets != -100).sum())
    task = CausalLMTask(ours, chunk_size=OpsConfig().loss_chunk_size)
    opt_ours = torch.optim.AdamW(ours.parameters(), lr=1e-5)
    opt_hf = torch.optim.AdamW(hf.parameters(), lr=1e-5)
    first, median = time_alternating({
        "ours": lambda: optimizer_step(opt_ours, lambda: task(ids, targets, normalizer=n)),
        "hf": lambda: optimizer_step(opt_hf, lambda: hf(input_ids=ids, labels=ids).loss)}, args.steps)
    result = {"benchmark": "gpt_oss training step (fwd+bwd+AdamW), fp32, CPU",
              "config": {**CONFIG, "seq": args.seq, "batch": 1, "steps": args.steps,
                         "hf_experts_implementation": hf.config._experts_implementation,
                         "hf_attention": "eager"},
              "machine": f"{platform.machine()}, {torch.get_num_threads()} threads", "torch": torch.__version__,
              "first_step_loss": first,
              "step_time_s": {**median, "ratio": median["ours"] / median["hf"]},
              "tokens_per_s": {k: args.seq / v for k, v in median.items()}}
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
