"""One Qwen3 training step, ours vs transformers' Qwen3ForCausalLM, on this machine's CPU.

    python models/qwen3/benchmarks/bench_step.py [--steps 5] [--seq 2048] [--out results.json]

Both sides start from the same weights and run forward, backward and an AdamW step on the same
batch (fp32, batch 1). Ours is the model under the causal-LM task (chunked linear + CE); theirs
is HF's forward with labels (SDPA attention, full fp32 logits). Step time: both models in one
process, steps alternated, median reported. Peak memory: each side in a fresh subprocess,
high-water RSS (VmHWM) of the process minus its RSS right after imports (weights, optimizer state and the
step's activations are all inside the difference).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys

import torch
from shardzoo.config import OpsConfig
from shardzoo.device import peak_memory_bytes
from shardzoo.testing.bench import optimizer_step, time_alternating

CONFIG = dict(vocab_size=151936, hidden_size=256, intermediate_size=768, num_hidden_layers=4,
              num_attention_heads=4, num_key_value_heads=2, head_dim=64, rope_theta=1e6, rms_norm_eps=1e-6,
              max_position_embeddings=4096, tie_word_embeddings=False)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def build(seq: int, chunk: int):
    from shardzoo.train.task import CausalLMTask
    from shardzoo_qwen3 import Qwen3ForCausalLM
    from transformers import Qwen3Config
    from transformers import Qwen3ForCausalLM as HF

    config = Qwen3Config(**CONFIG)
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    ids = torch.randint(0, config.vocab_size, (1, seq))
    targets = torch.cat([ids[:, 1:], torch.full((1, 1), -100)], 1)
    n = float((targets != -100).sum())

    def make_ours(state=None):
        model = Qwen3ForCausalLM(config)
        if state is not None:
            model.load_state_dict(state)
        task = CausalLMTask(model, chunk_size=chunk)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
        return lambda: optimizer_step(opt, lambda: task(ids, targets, normalizer=n))

    def make_hf(state=None):
        model = HF(config).train()
        if state is not None:
            model.load_state_dict(state)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
        return lambda: optimizer_step(opt, lambda: model(input_ids=ids, labels=ids).loss)

    return make_ours, make_hf


def measure_memory(side: str, seq: int, chunk: int, steps: int) -> None:
    base = rss_bytes()
    make_ours, make_hf = build(seq, chunk)
    step = make_ours() if side == "ours" else make_hf()
    for _ in range(steps):
        step()
    print(json.dumps({"peak_bytes": peak_memory_bytes("cpu") - base}))


def memory_of(side: str, seq: int, chunk: int, steps: int) -> int:
    out = subprocess.run([sys.executable, __file__, "--memory", side, "--seq", str(seq), "--chunk", str(chunk),
                          "--steps", str(steps)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_bytes"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    parser.add_argument("--chunk", type=int, default=None, help="ops.loss_chunk_size for ours (default: the config's)")
    parser.add_argument("--memory", choices=["ours", "hf"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    chunk = args.chunk or OpsConfig().loss_chunk_size
    if args.memory:
        measure_memory(args.memory, args.seq, chunk, 2)
        return

    make_ours, make_hf = build(args.seq, chunk)
    torch.manual_seed(1)
    from transformers import Qwen3Config
    from transformers import Qwen3ForCausalLM as HF
    state = HF(Qwen3Config(**CONFIG)).state_dict()  # the same weights on both sides
    ours, hf = make_ours(state), make_hf(state)
    del state
    first, median = time_alternating({"ours": ours, "hf": hf}, args.steps)
    loss_ours, loss_hf = first["ours"], first["hf"]
    del ours, hf
    mem = {side: memory_of(side, args.seq, chunk, 2) for side in ("ours", "hf")}
    t_ours, t_hf = median["ours"], median["hf"]
    result = {
        "benchmark": "qwen3 training step (fwd+bwd+AdamW), fp32, CPU",
        "config": {**CONFIG, "seq": args.seq, "batch": 1, "steps": args.steps, "loss_chunk_size": chunk},
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
        "torch": torch.__version__,
        "first_step_loss": {"ours": loss_ours, "hf": loss_hf},
        "step_time_s": {"ours": t_ours, "hf": t_hf, "ratio": t_ours / t_hf},
        "peak_memory_gib": {"ours": mem["ours"] / 2**30, "hf": mem["hf"] / 2**30, "ratio": mem["ours"] / mem["hf"]},
    }
    print(f"first-step loss: ours {loss_ours:.6f}  hf {loss_hf:.6f}")
    print(f"step time (median of {args.steps}): ours {t_ours:.3f} s  hf {t_hf:.3f} s  ratio {t_ours / t_hf:.3f}")
    print(f"peak memory above imports: ours {mem['ours'] / 2**30:.3f} GiB  hf {mem['hf'] / 2**30:.3f} GiB  "
          f"ratio {mem['ours'] / mem['hf']:.3f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
