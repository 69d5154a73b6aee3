"""`shardzoo plan` against the real run: predicted vs measured peak memory per rank, on CPU ranks.

    python benchmarks/plan_vs_measured.py [--only NAME ...] [--out FILE]

Each case is a package's tiny config grown until the training state, not the runtime, dominates the
memory. It is planned (`plan_memory`, rank 0) and trained for 3 steps under torchrun on gloo; the
measured figure is rank 0's peak RSS during training minus what the process held before the model
was built (metrics: `peak_memory_gib - memory_before_model_gib`). The runs set
MALLOC_MMAP_THRESHOLD_=65536 so that glibc returns freed tensors to the system and the resident set
follows the live tensors, as an accelerator's allocator statistics do; otherwise it keeps the high
water of every earlier phase. Goal: within +-10%.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QWEN3 = "models/qwen3/configs/tune_qwen3_tiny.yaml"
GPT_OSS = "models/gpt_oss/configs/tune_gpt_oss_tiny.yaml"
# A 95M-parameter Qwen3 (380 MB fp32) on 2048-token micro-batches.
QWEN3_SIZE = ["--model.hf_config.hidden_size", "1024", "--model.hf_config.intermediate_size", "2816",
              "--model.hf_config.num_hidden_layers", "8", "--model.hf_config.num_attention_heads", "16",
              "--model.hf_config.num_key_value_heads", "8", "--model.hf_config.head_dim", "64",
              "--data.cutoff_len", "512", "--data.packing", "true", "--training.per_device_train_batch_size", "4"]
QWEN3_MOE = ["--model.model_id", "qwen3_moe", "--model.hf_config.num_experts", "8",
             "--model.hf_config.num_experts_per_tok", "2", "--model.hf_config.moe_intermediate_size", "1408",
             "--model.hf_config.num_hidden_layers", "4"]
GPT_OSS_SIZE = ["--model.hf_config.hidden_size", "768", "--model.hf_config.intermediate_size", "768",
                "--model.hf_config.num_attention_heads", "12", "--model.hf_config.num_key_value_heads", "4",
                "--model.hf_config.head_dim", "64", "--model.hf_config.num_local_experts", "8",
                "--data.cutoff_len", "512", "--data.packing", "true", "--training.per_device_train_batch_size", "4"]
CASES = {
    "qwen3-recompute": (QWEN3, 2, QWEN3_SIZE),
    "qwen3-no-recompute": (QWEN3, 2, QWEN3_SIZE + ["--parallel.recompute", "false"]),
    "qwen3-4ranks": (QWEN3, 4, QWEN3_SIZE),
    "qwen3-cp2": (QWEN3, 4, QWEN3_SIZE + ["--parallel.cp_size", "2"]),
    "qwen3-tp2": (QWEN3, 2, QWEN3_SIZE + ["--parallel.tp_size", "2"]),
    "qwen3-moe-ep2": (QWEN3, 2, QWEN3_SIZE + QWEN3_MOE + ["--parallel.ep_size", "2"]),
    "gpt-oss": (GPT_OSS, 2, GPT_OSS_SIZE),
    "gpt-oss-ep2": (GPT_OSS, 2, GPT_OSS_SIZE + ["--parallel.ep_size", "2"]),
}
STEPS = ["--training.max_steps", "3", "--training.logging_steps", "1", "--training.save_steps", "0"]


def predicted(config: str, world: int, overrides: list[str]) -> dict:
    from shardzoo.config import load_config
    from shardzoo.plan import plan_memory

    plan = plan_memory(load_config(str(REPO / config), overrides + ["--training.output_dir", "unused"]), world)
    return {name: value for name, value in plan.rows()}


def measured(config: str, world: int, overrides: list[str]) -> dict:
    from shardzoo.testing import run_training

    with tempfile.TemporaryDirectory() as out:
        records = run_training(REPO / config, out, nproc=world, cwd=REPO, overrides=overrides + STEPS,
                               env={"MALLOC_MMAP_THRESHOLD_": "65536"})
    steps = [r for r in records if "peak_memory_gib" in r]
    peak = max(r["peak_memory_gib"] for r in steps) * 2**30
    before = steps[0]["memory_before_model_gib"] * 2**30
    return {"peak_rss": peak, "before_model": before, "training": peak - before}


def run(names: list[str]) -> dict:
    results = {}
    for name in names:
        config, world, overrides = CASES[name]
        plan = predicted(config, world, overrides)
        got = measured(config, world, overrides)
        results[name] = {"config": config, "world": world, "overrides": overrides, "plan": plan, "measured": got,
                         "plan_over_measured": plan["total"] / got["training"]}
        print(f"{name:<20} world {world}: plan {plan['total'] / 2**20:7.0f} MiB, measured "
              f"{got['training'] / 2**20:7.0f} MiB -> {100 * (plan['total'] / got['training'] - 1):+5.1f}%", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=sorted(CASES), help="these cases (default: all)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results = run(args.only or list(CASES))
    errors = [abs(r["plan_over_measured"] - 1) for r in results.values()]
    print(f"largest error {100 * max(errors):.1f}% over {len(errors)} cases (goal 10%)")
    if args.out:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=REPO).stdout.strip()
        args.out.write_text(json.dumps({
            "benchmark": "shardzoo plan vs the measured training peak per rank (CPU, gloo, rank 0)",
            "hardware": f"{platform.machine()} CPU, {os.cpu_count()} cores", "commit": commit,
            "cases": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
