"""`shardzoo plan` against the real run: predicted vs measured peak memory per rank, on CPU ranks.

    python benchmarks/plan_vs_measured.py [--only NAME ...] [--out FILE]

Each case is a package's tiny config grown until the training state, not the runtime, dominates the
memory. It is planned (`plan_memory`, rank 0) and trained for 3 steps under torchrun on gloo; the
measured figure is rank 0's peak RSS during training minus what the process held before the model
was built (metrics: `peak_memory_gib - memory_before_model_gib`). The runs set
MALLOC_MMAP_THRESHOLD_=65536 so that glibc returns freed tensors to the system and the resident set
follows the live tensors, as an accelerator's allocator statistics do; otherwise it keeps the high
water of every earlier phase. Goal: within +-10%.

Two cases also check the plan's other peaks: each trains 2 steps and saves, resumes for one more
(the trainer records the load's peak: `resume_peak_memory_gib`), then exports the checkpoint on the
same ranks (benchmarks/export_memory.py's worker, each rank's peak RSS growth).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
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
INTERNVL = "models/internvl/configs/tune_internvl_tiny.yaml"
# Its language model at the Qwen3 case's width; the vision tower stays tiny (its activations are not planned).
INTERNVL_SIZE = [f"--model.hf_config.text_config.{k}" for k in ("hidden_size", "intermediate_size", "num_hidden_layers",
                                                               "num_attention_heads", "num_key_value_heads")]
INTERNVL_SIZE = [a for pair in zip(INTERNVL_SIZE, ["1024", "2816", "8", "16", "8"]) for a in pair] + [
    "--data.cutoff_len", "1024", "--data.packing", "true", "--training.per_device_train_batch_size", "2"]
WAN = "models/wan/configs/tune_wan_tiny.yaml"
WAN_ENCODERS = REPO / "outputs" / "wan_tiny_encoders"  # written by the case first, as tune_tiny.sh does
# A 768-wide, 8-layer DiT on 64 x 64 clips of 5 frames (768 video tokens).
WAN_SIZE = ["--model.hf_config.num_attention_heads", "12", "--model.hf_config.attention_head_dim", "64",
            "--model.hf_config.ffn_dim", "3072", "--model.hf_config.num_layers", "8", "--task.height", "64",
            "--task.width", "64"] + [a for part in ("vae", "text_encoder", "tokenizer")
                                     for a in (f"--task.{part}", str(WAN_ENCODERS / part))]
CASES = {
    "qwen3-recompute": (QWEN3, 2, QWEN3_SIZE),
    "qwen3-no-recompute": (QWEN3, 2, QWEN3_SIZE + ["--parallel.recompute", "false"]),
    "qwen3-4ranks": (QWEN3, 4, QWEN3_SIZE),
    "qwen3-cp2": (QWEN3, 4, QWEN3_SIZE + ["--parallel.cp_size", "2"]),
    "qwen3-tp2": (QWEN3, 2, QWEN3_SIZE + ["--parallel.tp_size", "2"]),
    "qwen3-moe-ep2": (QWEN3, 2, QWEN3_SIZE + QWEN3_MOE + ["--parallel.ep_size", "2"]),
    "qwen3-offload": (QWEN3, 2, QWEN3_SIZE + ["--parallel.offload_to_cpu", "true"]),
    "internvl": (INTERNVL, 2, INTERNVL_SIZE),
    "wan": (WAN, 2, WAN_SIZE),
    "gpt-oss": (GPT_OSS, 2, GPT_OSS_SIZE),
    "gpt-oss-ep2": (GPT_OSS, 2, GPT_OSS_SIZE + ["--parallel.ep_size", "2"]),
}
# Cases whose resume and export peaks are measured too.
RESUMED = ("qwen3-recompute", "gpt-oss-ep2")
STEPS = ["--training.max_steps", "3", "--training.logging_steps", "1", "--training.save_steps", "0"]


def predicted(config: str, world: int, overrides: list[str]) -> dict:
    from shardzoo.config import load_config
    from shardzoo.plan import plan_memory

    plan = plan_memory(load_config(str(REPO / config), overrides + ["--training.output_dir", "unused"]), world)
    return {**dict(plan.rows()), "resume": plan.resume, "export": plan.export}


def measured(config: str, world: int, overrides: list[str]) -> dict:
    from shardzoo.testing import run_training

    with tempfile.TemporaryDirectory() as out:
        records = run_training(REPO / config, out, nproc=world, cwd=REPO, overrides=overrides + STEPS,
                               env={"MALLOC_MMAP_THRESHOLD_": "65536"})
    steps = [r for r in records if "peak_memory_gib" in r]
    peak = max(r["peak_memory_gib"] for r in steps) * 2**30
    before = steps[0]["memory_before_model_gib"] * 2**30
    return {"peak_rss": peak, "before_model": before, "training": peak - before}


def measured_resume_and_export(config: str, world: int, overrides: list[str]) -> dict:
    from shardzoo.testing import run_training

    env = {"MALLOC_MMAP_THRESHOLD_": "65536"}
    steps = ["--training.logging_steps", "1", "--training.save_steps", "2"]
    with tempfile.TemporaryDirectory() as out, tempfile.TemporaryDirectory() as export_dir:
        run_training(REPO / config, out, nproc=world, cwd=REPO, env=env,
                     overrides=overrides + steps + ["--training.max_steps", "2"])
        records = run_training(REPO / config, out, nproc=world, cwd=REPO, env=env,
                               overrides=overrides + steps + ["--training.max_steps", "3"])
        resumed = next(r for r in records if "resumed_from" in r)
        result = Path(export_dir) / "ranks.json"
        subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(world),
                        str(REPO / "benchmarks/export_memory.py"), "--export-worker", str(Path(out) / "checkpoint-2"),
                        str(Path(export_dir) / "hf"), str(5 * 2**30), str(result)],
                       env={**os.environ, **env, "OMP_NUM_THREADS": "1"}, check=True)
        export = max(r["peak_rss_growth_bytes"] for r in json.loads(result.read_text()))
    return {"resume": (resumed["resume_peak_memory_gib"] - resumed["memory_before_model_gib"]) * 2**30,
            "export": export}


def run(names: list[str]) -> dict:
    results = {}
    for name in names:
        config, world, overrides = CASES[name]
        if config == WAN:
            subprocess.run([sys.executable, "-m", "shardzoo_wan.tiny_encoders", "--out", str(WAN_ENCODERS),
                            "--tokenizer", str(REPO / "data/tokenizer")], check=True, cwd=REPO)
        plan = predicted(config, world, overrides)
        got = measured(config, world, overrides)
        results[name] = {"config": config, "world": world, "overrides": overrides, "plan": plan, "measured": got,
                         "plan_over_measured": plan["total"] / got["training"]}
        print(f"{name:<20} world {world}: plan {plan['total'] / 2**20:7.0f} MiB, measured "
              f"{got['training'] / 2**20:7.0f} MiB -> {100 * (plan['total'] / got['training'] - 1):+5.1f}%", flush=True)
        if name in RESUMED:
            other = measured_resume_and_export(config, world, overrides)
            for peak in ("resume", "export"):
                ratio = plan[peak] / other[peak]
                results[f"{name}:{peak}"] = {"plan": plan[peak], "measured": other[peak], "plan_over_measured": ratio}
                kind = "bound" if peak == "export" else "plan"  # the export row is an upper bound
                print(f"{name + ':' + peak:<20} world {world}: {kind} {plan[peak] / 2**20:7.0f} MiB, measured "
                      f"{other[peak] / 2**20:7.0f} MiB -> {100 * (ratio - 1):+5.1f}%", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=sorted(CASES), help="these cases (default: all)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results = run(args.only or list(CASES))
    errors = [abs(r["plan_over_measured"] - 1) for name, r in results.items() if not name.endswith(":export")]
    print(f"largest error {100 * max(errors):.1f}% over {len(errors)} predictions (goal 10%)")
    exceeded = [name for name, r in results.items() if name.endswith(":export") and r["plan_over_measured"] < 1]
    print(f"export bound exceeded in {len(exceeded)} case(s) {exceeded or ''}")
    if args.out:
        from shardzoo.bench.report import git_commit

        commit = git_commit(REPO)
        args.out.write_text(json.dumps({
            "benchmark": "shardzoo plan vs the measured training peak per rank (CPU, gloo, rank 0)",
            "hardware": f"{platform.machine()} CPU, {os.cpu_count()} cores", "commit": commit,
            "cases": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
