"""The prepared accelerator check: every CUDA path and the headline figures in one short run.

    python benchmarks/gpu_check.py [--out DIR] [--dry-run]      (benchmarks/gpu_check.sh installs first)

Stages, each under its own time limit, each writing its log and files under DIR:
  op-tests     every CUDA backend against its reference (fp32 and bf16), flex attention with windows,
               sinks and documents, torch._grouped_mm in bf16 (core/tests/test_cuda_ops.py)
  qwen3-step   our training step vs transformers' at Qwen3-1.7B, seq 4096, bf16: tokens/s, MFU, peak memory
  moe-layer    GPT-OSS-20B's expert layer (32 experts, top-4), grouped GEMM vs the loop, bf16, with MFU
  wan-step     Wan2.1 1.3B DiT step vs diffusers (skipped, with a line, where diffusers is missing)
  train        2-step runs of every package's tiny config through `shardzoo train` on the device, and
               Qwen3's again with each FSDP unit compiled, and with offload_to_cpu and an ignored module
               (their losses beside the eager ones)
Then DIR/summary.json, DIR/summary.md and a one-screen summary. `--dry-run` runs every stage on tiny
shapes on the CPU (tests/test_gpu_check.py), so the script cannot rot between the GPUs it waits for.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from shardzoo import device as devices
from shardzoo.device import CPU, CUDA

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("qwen3", "gpt_oss", "internvl", "wan")
DRY_RUN_SLACK = 3
"""The limits are sized for one H100/H200-class GPU (about 8 minutes in all); a dry run's CPU steps,
process starts and compiles take longer."""


@dataclass
class Stage:
    name: str
    limit_s: int
    commands: Callable[[Path, bool], list[list[str]]]
    """(stage folder, dry run) -> the commands, run in order."""
    figures: Callable[[Path, str], dict] = lambda folder, log: {}
    """(stage folder, its log) -> the figures the summary shows."""
    skip: Callable[[], Optional[str]] = lambda: None
    """Why the stage cannot run here, or None."""


def _py(*args: str) -> list[str]:
    return [sys.executable, *args]


def op_tests(folder: Path, dry: bool) -> list[list[str]]:
    return [_py("-m", "pytest", "-q", "-p", "no:cacheprovider", "core/tests/test_cuda_ops.py")]


def pytest_figures(folder: Path, log: str) -> dict:
    tail = [line for line in log.splitlines() if " passed" in line or " failed" in line]
    return {"pytest": tail[-1].strip("= ") if tail else "no summary line"}


def step_bench(model: str, preset: str) -> Callable[[Path, bool], list[list[str]]]:
    def commands(folder: Path, dry: bool) -> list[list[str]]:
        args = ["--device", CPU, "--preset", "tiny", "--no-memory", "--steps", "1", "--warmup", "1"] if dry else \
            ["--device", CUDA, "--preset", preset, "--steps", "5"]
        return [_py(f"models/{model}/benchmarks/bench_step.py", *args, "--out-dir", str(folder))]
    return commands


def step_figures(folder: Path, log: str) -> dict:
    files = sorted(folder.glob("*.json"))
    if not files:
        return {}
    result = json.loads(files[-1].read_text())
    ours, ref = result["sides"]["ours"], next(v for k, v in result["sides"].items() if k != "ours")
    figures = {"tokens_per_s": ours["tokens_per_s"], "reference_tokens_per_s": ref["tokens_per_s"],
               "speedup": 1 / result["ratio"]["step_time"], "mfu": ours["mfu"], "reference_mfu": ref["mfu"],
               "peak_memory_gib": ours["peak_memory_gib"], "reference_peak_memory_gib": ref["peak_memory_gib"],
               "first_loss_relative_difference": result["first_loss_relative_difference"]}
    return figures


def moe_layer(folder: Path, dry: bool) -> list[list[str]]:
    shape = ["--tokens", "256", "--hidden", "64", "--inter", "64", "--experts", "4", "--top-k", "2", "--reps", "1"] \
        if dry else ["--tokens", "16384", "--hidden", "2880", "--inter", "2880", "--experts", "32", "--top-k", "4",
                     "--device", CUDA, "--dtype", "bf16"]
    return [_py("benchmarks/moe_layer.py", *shape, "--out", str(folder / "moe_layer.json"))]


def moe_figures(folder: Path, log: str) -> dict:
    path = folder / "moe_layer.json"
    if not path.is_file():
        return {}
    r = json.loads(path.read_text())
    return {"grouped_over_loop_time": r["time_s"]["ratio_grouped_to_loop"], "mfu_grouped": r["mfu"]["torch_grouped_mm"],
            "mfu_loop": r["mfu"]["reference_loop"], "max_abs_grad_difference": r["max_abs_grad_difference"]}


def diffusers_missing() -> Optional[str]:
    probe = subprocess.run(_py("-c", "import diffusers"), capture_output=True, text=True)
    return None if probe.returncode == 0 else "diffusers is not installed: the Wan step benchmark is skipped"


def train(folder: Path, dry: bool) -> list[list[str]]:
    device = CPU if dry else CUDA
    # Offload with an ignored module: FSDP's shards on the host, the rest (buffers, the ignored norm) on the
    # device (build_model moves it; never run on an accelerator before).
    # Wan's tiny run encodes its clips with diffusers' VAE: without diffusers it is left out (train_figures says so).
    packages = [pkg for pkg in PACKAGES if pkg != "wan" or not diffusers_missing()]
    runs = [(pkg, pkg, []) for pkg in packages] + [("qwen3", "qwen3-compiled", ["--parallel.compile", "true"]),
                                                   ("qwen3", "qwen3-offload-ignored", [
                                                       "--parallel.offload_to_cpu", "true",
                                                       "--parallel.ignored_modules", "['model.norm']"])]
    return [["bash", f"models/{pkg}/tune_tiny.sh", "--training.device", device, "--training.max_steps", "2",
             "--training.logging_steps", "1", "--training.save_steps", "0", "--training.progress_bar", "false",
             "--training.output_dir", str(folder / name), *extra] for pkg, name, extra in runs]


def train_figures(folder: Path, log: str) -> dict:
    figures = {"wan": "skipped: diffusers is not installed"} if diffusers_missing() else {}
    for run in sorted(p for p in folder.iterdir() if (p / "metrics.jsonl").is_file()):
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
        figures[run.name] = [r["loss"] for r in records if "loss" in r]
    for variant in ("compiled", "offload-ignored"):
        if "qwen3" in figures and f"qwen3-{variant}" in figures and figures["qwen3"]:
            figures[f"{variant}_vs_eager_max_rel"] = max(abs(a - b) / abs(b) for a, b in
                                                         zip(figures[f"qwen3-{variant}"], figures["qwen3"]))
    return figures


STAGES = [
    Stage("op-tests", 110, op_tests, pytest_figures),
    Stage("qwen3-step", 120, step_bench("qwen3", "1.7b"), step_figures),
    Stage("moe-layer", 45, moe_layer, moe_figures),
    Stage("wan-step", 90, step_bench("wan", "1.3b"), step_figures, diffusers_missing),
    Stage("train", 110, train, train_figures),
]


@dataclass
class Outcome:
    status: str
    seconds: float
    figures: dict = field(default_factory=dict)
    detail: str = ""


def run_stage(stage: Stage, out: Path, dry: bool) -> Outcome:
    folder = out / stage.name
    folder.mkdir(parents=True, exist_ok=True)
    why = stage.skip()
    if why:
        return Outcome("skipped", 0.0, detail=why)
    start, status, detail = time.monotonic(), "ok", ""
    limit = stage.limit_s * (DRY_RUN_SLACK if dry else 1)
    log = folder / "log.txt"
    # The launch scripts' torchrun must be the one beside this Python (the environment the packages went
    # into), also where that environment's bin folder is not on PATH.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {**os.environ, "PATH": path, "PYTHONUNBUFFERED": "1",
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "4")}
    with open(log, "w") as f:
        for command in stage.commands(folder, dry):
            left = limit - (time.monotonic() - start)
            f.write(f"$ {' '.join(command)}\n")
            f.flush()
            try:
                proc = subprocess.run(command, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, timeout=max(left, 1),
                                      env=env)
            except subprocess.TimeoutExpired:
                status, detail = "timeout", f"over its {limit} s limit at: {' '.join(command[-6:])}"
                break
            if proc.returncode != 0:
                status, detail = "failed", f"exit {proc.returncode}: {' '.join(command[:3])} (see {log})"
                break
    text = log.read_text(errors="replace")
    try:
        figures = stage.figures(folder, text)
    except (OSError, KeyError, ValueError) as exc:
        figures, detail = {}, detail or f"figures unreadable: {exc!r}"
    return Outcome(status, time.monotonic() - start, figures, detail)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


def summary_text(outcomes: dict[str, Outcome], dry: bool, device: str) -> str:
    lines = [f"# GPU check{' (dry run on the CPU)' if dry else ''}: {device}", "",
             "| stage | status | s | figures |", "| --- | --- | --- | --- |"]
    for name, o in outcomes.items():
        figures = "; ".join(f"{k} {_fmt(v)}" for k, v in o.figures.items())
        lines.append(f"| {name} | {o.status} | {o.seconds:.0f} | {figures or o.detail} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None,
                        help="default: benchmarks/results/gpu_check_<device>_<date>")
    parser.add_argument("--dry-run", action="store_true", help="every stage on tiny shapes on the CPU")
    parser.add_argument("--only", nargs="*", choices=[s.name for s in STAGES], help="these stages (default: all)")
    args = parser.parse_args(argv)
    import torch

    if not args.dry_run and devices.detect_device_type() != CUDA:
        print("gpu_check: torch sees no NVIDIA GPU; use --dry-run to exercise the stages on the CPU", file=sys.stderr)
        return 2
    device = "cpu (dry run)" if args.dry_run else devices.device_name(CUDA)
    if args.out is None:
        short = "cpu-dry-run" if args.dry_run else device.lower().replace("nvidia ", "").replace(" ", "-")
        args.out = REPO / "benchmarks" / "results" / f"gpu_check_{short}_{time.strftime('%Y-%m-%d')}"
    args.out.mkdir(parents=True, exist_ok=True)
    outcomes: dict[str, Outcome] = {}
    for stage in STAGES:
        if args.only and stage.name not in args.only:
            continue
        print(f"[gpu_check] {stage.name} (limit {stage.limit_s} s) ...", flush=True)
        outcomes[stage.name] = run_stage(stage, args.out, args.dry_run)
        print(f"[gpu_check] {stage.name}: {outcomes[stage.name].status} in {outcomes[stage.name].seconds:.0f} s "
              f"{outcomes[stage.name].detail}", flush=True)
    text = summary_text(outcomes, args.dry_run, device)
    (args.out / "summary.md").write_text(text)
    (args.out / "summary.json").write_text(json.dumps({
        "device": device, "dry_run": args.dry_run, "torch": torch.__version__,
        "stages": {k: vars(v) for k, v in outcomes.items()}}, indent=1) + "\n")
    print("\n" + text)
    return 0 if all(o.status in ("ok", "skipped") for o in outcomes.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
