"""A real model's shapes on CPU ranks through its real launch script: Qwen3-8B's hidden size, heads and
vocabulary with one layer, random init, 2 ranks, 2 steps; measured peak memory against `shardzoo plan`.

    python benchmarks/real_shapes.py [--out FILE]

It runs `NPUS_PER_NODE=2 MODEL_DIR=models/qwen3/configs/qwen3-8b bash models/qwen3/tune_8b.sh` with
overrides (one layer, 256-token rows, CPU). To fit a 24 GiB machine the embedding and the head (1.24B of
the 1.44B parameters) are frozen: with AdamW on them the plan says ~35 GiB for the two ranks. GPT-OSS-20B
with one layer does not fit even so (plan: 14.8 GiB per rank with EP 2 and frozen embeddings) and is
not run. Measured: rank 0's peak RSS minus what it held before the model (the trainer's metrics), and
the two ranks' summed resident sets sampled every 0.2 s (what the machine must hold).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = "models/qwen3/configs/tune_qwen3_8b.yaml"
MODEL_DIR = "models/qwen3/configs/qwen3-8b"
OVERRIDES = ["--model.train_from_scratch", "true", "--model.tokenizer_name_or_path", "data/tokenizer",
             "--model.hf_config.num_hidden_layers", "1", "--model.freeze_modules", "['model.embed_tokens', 'lm_head']",
             "--data.cutoff_len", "256", "--training.device", "cpu", "--training.gradient_accumulation_steps", "1",
             "--training.max_steps", "2", "--training.save_steps", "0", "--training.export_hf_at_end", "false"]


def _rss_of_workers(marker: str) -> int:
    """Summed resident set of the processes whose command line holds `marker` (the run's output dir)."""
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if marker.encode() not in cmdline or b"shardzoo" not in cmdline or b"torch.distributed.run" in cmdline:
                continue
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def measure() -> dict:
    from shardzoo.bench.report import git_commit
    from shardzoo.config import load_config
    from shardzoo.plan import plan_memory
    from shardzoo.testing import run_launch_script

    plan = plan_memory(load_config(str(REPO / CONFIG), OVERRIDES + ["--model.model_name_or_path", MODEL_DIR,
                                                                    "--training.output_dir", "unused"]), 2)
    with tempfile.TemporaryDirectory() as out:
        peak, done = [0], threading.Event()

        def sample() -> None:
            while not done.wait(0.2):
                peak[0] = max(peak[0], _rss_of_workers(out))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        start = time.perf_counter()
        try:
            records, _ = run_launch_script(REPO / "models/qwen3/tune_8b.sh", out, cwd=REPO, overrides=OVERRIDES,
                                           env={"NPUS_PER_NODE": "2", "MODEL_DIR": MODEL_DIR,
                                                "MALLOC_MMAP_THRESHOLD_": "65536"}, timeout=1800)
        finally:
            done.set()
            sampler.join()
        seconds = time.perf_counter() - start
    steps = [r for r in records if "loss" in r]
    training = (max(r["peak_memory_gib"] for r in steps) - steps[0]["memory_before_model_gib"]) * 2**30
    return {"benchmark": "Qwen3-8B shapes, 1 layer, frozen embedding and head, 2 CPU ranks through tune_8b.sh",
            "hardware": f"{platform.machine()} CPU, {os.cpu_count()} cores",
            "commit": git_commit(REPO),
            "overrides": OVERRIDES, "losses": [r["loss"] for r in steps], "seconds": seconds,
            "plan": dict(plan.rows()), "measured_rank0_training": training, "plan_over_measured": plan.total / training,
            "both_ranks_peak_rss": peak[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result = measure()
    gib = 2**30
    print(f"losses {result['losses']} in {result['seconds']:.0f}s")
    measured = result["measured_rank0_training"] / gib
    print(f"rank 0: plan {result['plan']['total'] / gib:.2f} GiB, measured {measured:.2f} GiB -> "
          f"{100 * (result['plan_over_measured'] - 1):+.1f}%; both ranks' peak RSS "
          f"{result['both_ranks_peak_rss'] / gib:.2f} GiB (machine limit 24 GiB)")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
