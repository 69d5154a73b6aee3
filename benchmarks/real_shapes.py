"""Real models' shapes on CPU ranks through their real launch scripts: the hidden size, heads, experts and
vocabulary with one layer, random init, 2 ranks, 2 steps; measured peak memory against `shardzoo plan`.

    python benchmarks/real_shapes.py [--case qwen3-8b|gpt-oss-20b ...] [--out-dir DIR]

* qwen3-8b: `NPUS_PER_NODE=2 MODEL_DIR=models/qwen3/configs/qwen3-8b bash models/qwen3/tune_8b.sh` with
  overrides (one layer, 256-token rows, CPU). To fit a 24 GiB machine the embedding and the head (1.24B of
  the 1.44B parameters) are frozen: with AdamW on them the plan says ~35 GiB for the two ranks.
  qwen3-8b-one-root: the same with the embedding and the head inside the root unit (the config's wrapping
  before it made them units of their own).
* gpt-oss-20b: `EP_SIZE=2 ... bash models/gpt_oss/tune_20b.sh`, one (sliding-window) layer with all 32
  experts (16 per rank), 256-token rows (the config makes the embedding and the head units). Frozen to
  fit: the embedding, the head and the experts (they still run forward and backward, only their
  weights' gradients and AdamW state are left out): with AdamW on the experts the plan says 13.3 GiB per
  rank, 26.5 GiB for the two.
Measured: rank 0's peak RSS minus what it held before the model (the trainer's metrics), and the two
ranks' summed resident sets sampled every 0.2 s (what the machine must hold).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMMON = ["--model.train_from_scratch", "true", "--model.tokenizer_name_or_path", "data/tokenizer",
          "--model.hf_config.num_hidden_layers", "1", "--data.cutoff_len", "256", "--training.device", "cpu",
          "--training.gradient_accumulation_steps", "1", "--training.max_steps", "2", "--training.save_steps", "0",
          "--training.export_hf_at_end", "false"]


@dataclass(frozen=True)
class Case:
    title: str
    script: str
    config: str
    model_dir: str
    overrides: list[str]
    env: dict


CASES = {
    "qwen3-8b": Case("Qwen3-8B shapes, 1 layer, frozen embedding and head, 2 CPU ranks through tune_8b.sh",
                     "models/qwen3/tune_8b.sh", "models/qwen3/configs/tune_qwen3_8b.yaml",
                     "models/qwen3/configs/qwen3-8b",
                     COMMON + ["--model.freeze_modules", "['model.embed_tokens', 'lm_head']"], {}),
    # The same with the wrapping the config had before: the embedding and the head in the root unit, 1.2B
    # parameters gathered for the whole step.
    "qwen3-8b-one-root": Case("Qwen3-8B shapes as qwen3-8b, the embedding and the head in the root unit",
                              "models/qwen3/tune_8b.sh", "models/qwen3/configs/tune_qwen3_8b.yaml",
                              "models/qwen3/configs/qwen3-8b",
                              COMMON + ["--model.freeze_modules", "['model.embed_tokens', 'lm_head']",
                                        "--parallel.fsdp_modules", "['model.layers.{*}']"], {}),
    "gpt-oss-20b": Case("GPT-OSS-20B shapes, 1 layer of 32 experts over EP 2, frozen embedding, head and experts, "
                        "2 CPU ranks through tune_20b.sh",
                        "models/gpt_oss/tune_20b.sh", "models/gpt_oss/configs/tune_gpt_oss_20b_4k.yaml",
                        "models/gpt_oss/configs/gpt-oss-20b",
                        COMMON + ["--model.hf_config.layer_types", "['sliding_attention']",
                                  "--model.freeze_modules",
                                  "['model.embed_tokens', 'lm_head', 'model.layers.{*}.mlp.experts']"],
                        {"EP_SIZE": "2"}),
}


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


def measure(case: Case) -> dict:
    from shardzoo.bench.report import git_commit
    from shardzoo.config import load_config
    from shardzoo.plan import plan_memory
    from shardzoo.testing import run_launch_script

    plan_overrides = case.overrides + ["--model.model_name_or_path", case.model_dir, "--training.output_dir", "unused"]
    if "EP_SIZE" in case.env:  # what the script passes
        plan_overrides += ["--parallel.ep_size", case.env["EP_SIZE"]]
    plan = plan_memory(load_config(str(REPO / case.config), plan_overrides), 2)
    with tempfile.TemporaryDirectory() as out:
        peak, done = [0], threading.Event()

        def sample() -> None:
            while not done.wait(0.2):
                peak[0] = max(peak[0], _rss_of_workers(out))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        start = time.perf_counter()
        try:
            records, _ = run_launch_script(REPO / case.script, out, cwd=REPO, overrides=case.overrides,
                                           env={"NPUS_PER_NODE": "2", "MODEL_DIR": case.model_dir,
                                                "MALLOC_MMAP_THRESHOLD_": "65536", **case.env}, timeout=1800)
        finally:
            done.set()
            sampler.join()
        seconds = time.perf_counter() - start
    steps = [r for r in records if "loss" in r]
    training = (max(r["peak_memory_gib"] for r in steps) - steps[0]["memory_before_model_gib"]) * 2**30
    return {"benchmark": case.title,
            "hardware": f"{platform.machine()} CPU, {os.cpu_count()} cores",
            "commit": git_commit(REPO),
            "overrides": case.overrides, "env": case.env, "losses": [r["loss"] for r in steps], "seconds": seconds,
            "plan": dict(plan.rows()), "measured_rank0_training": training, "plan_over_measured": plan.total / training,
            "both_ranks_peak_rss": peak[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--out-dir", type=Path, help="writes real_shapes_<case>_cpu_<date>.json there")
    args = parser.parse_args()
    gib = 2**30
    for name in args.case:
        result = measure(CASES[name])
        print(f"{name}: losses {result['losses']} in {result['seconds']:.0f}s")
        measured = result["measured_rank0_training"] / gib
        print(f"{name}: rank 0: plan {result['plan']['total'] / gib:.2f} GiB, measured {measured:.2f} GiB -> "
              f"{100 * (result['plan_over_measured'] - 1):+.1f}%; both ranks' peak RSS "
              f"{result['both_ranks_peak_rss'] / gib:.2f} GiB (machine limit 24 GiB)")
        if args.out_dir:
            path = args.out_dir / f"real_shapes_{name.replace('-', '_')}_cpu_{datetime.date.today()}.json"
            path.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
