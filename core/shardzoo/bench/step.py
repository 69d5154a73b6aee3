"""Our training step against the reference implementation's, in the same loop and process.

A model package states its benchmark as a `StepBenchmark` (models/<name>/benchmarks/bench_step.py):
presets (the stated configs), how to build each side on the current device, which blocks recompute
and compile act on, and its goals. `main(benchmark)` is that script's command line. One run:

1. Both sides are built on the device (`--device`, auto by default) in the run's dtype (fp32 on
   CPU, bf16 on accelerators: parameters, gradients and AdamW state alike on both sides) and ours
   loads the reference's weights, so their first losses must agree.
2. FLOPs: one forward+backward of each side under torch's FlopCounterMode (`flops.py`). The
   reference's count is the step's model FLOPs, the numerator of FLOP/s and MFU for both sides.
3. `--recompute` and `--compile` act on the same blocks of both sides.
4. Step time: forward, backward and AdamW, sides alternated after `--warmup` untimed steps each,
   median of `--steps` per side, inside the fastest-SDPA context on CUDA (both sides get the same
   attention kernels).
5. Peak memory: each side alone in a fresh process (this script again), two steps, peak minus the
   memory in use before the build: weights, gradients, optimizer state and activations.
6. The limit: on CPU the machine's dense matmul FLOP/s measured in this run in the run's dtype; on
   an accelerator the vendor peak table (`shardzoo.device.peak_flops`); the files say which.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.nn as nn

from ..device import (
    local_device,
    memory_in_use_bytes,
    peak_flops,
    peak_memory_bytes,
    reset_peak_memory,
    resolve_device_type,
    synchronize,
)
from ..ops.attention import fastest_sdpa
from ..parallel.compile import apply_compile
from ..parallel.recompute import apply_recompute
from . import report
from .flops import count_flops
from .timing import optimizer_step, time_alternating

OURS = "ours"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Preset:
    config: dict[str, Any]
    """The model config (kwargs of the reference's config class)."""
    seq: int
    batch: int = 1
    extra: dict[str, Any] = field(default_factory=dict)
    """The case's other knobs (image tiles, video frames), written into the result as they are."""
    note: str = ""


@dataclass
class Side:
    model: nn.Module
    loss: Callable[[], torch.Tensor]
    """Forward of one batch to the scalar training loss (the batch is built once, in `build`)."""


@dataclass(frozen=True)
class Goal:
    """A target for a ratio (`step_time`, `peak_memory`: ours / reference, at most) or for `mfu`
    (ours, at least), checked where it applies: on `device_type` at `preset` as stated (no seq, batch
    or dtype override). Reported, never asserted."""
    metric: str
    bound: float
    device_type: str = "cpu"
    preset: str = "cpu"

    def describe(self, reference: str) -> str:
        if self.metric == "mfu":
            return f"our FLOP/s at least {self.bound:.0%} of the limit"
        return f"{self.metric.replace('_', ' ')} at most {self.bound}x {reference}"

    def value(self, result: dict[str, Any]) -> float:
        return result["sides"][OURS]["mfu"] if self.metric == "mfu" else result["ratio"][self.metric]

    def met(self, value: float) -> bool:
        return value >= self.bound if self.metric == "mfu" else value <= self.bound


@dataclass(frozen=True)
class StepBenchmark:
    model: str
    reference: str
    """The reference implementation's name: transformers, diffusers."""
    presets: dict[str, Preset]
    build: Callable[[Preset, str, torch.dtype], Side]
    """(preset, side, dtype) -> Side, for side `ours` or `reference`. Called with the device as the
    default device and the seed set, so both sides see the same batch."""
    blocks: tuple[str, ...]
    """Module patterns that `--recompute` and `--compile` act on, the same names on both sides."""
    describe: str
    """What each side runs (attention implementation, experts, loss), for the result files."""
    default_preset: dict[str, str] = field(default_factory=dict)
    """Device type -> preset; `cpu` where a device type is not named."""
    tokens: Callable[[Preset], int] = lambda preset: preset.seq * preset.batch
    """Tokens one step trains on, for tokens/s."""
    goals: tuple[Goal, ...] = ()
    steps: int = 3
    """Timed steps per side by default (more for cheap steps, whose medians are noisier)."""
    suite: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Device type -> the presets `benchmarks/run.py` runs there (default: the device's default preset)."""

    def suite_presets(self, device_type: str) -> tuple[str, ...]:
        return self.suite.get(device_type, (self.default_preset.get(device_type, "cpu"),))


def _apply_options(model: nn.Module, bench: StepBenchmark, recompute: bool, compile: bool) -> None:
    if recompute:
        apply_recompute(model, list(bench.blocks))
    if compile:
        apply_compile(model, list(bench.blocks))


def build_side(bench: StepBenchmark, preset: Preset, side: str, device: torch.device, dtype: torch.dtype) -> Side:
    torch.manual_seed(0)
    with device:
        built = bench.build(preset, side, dtype)
    built.model.to(dtype).train()
    return built


def _adamw(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=1e-5)


def measure_memory(bench: StepBenchmark, preset: Preset, side: str, device_type: str, dtype: torch.dtype,
                   recompute: bool, compile: bool) -> int:
    """Peak bytes of one side alone: built, then two optimizer steps (the second holds AdamW state)."""
    device = local_device(device_type, 0)
    synchronize(device_type)
    reset_peak_memory(device_type)
    base = memory_in_use_bytes(device_type)
    built = build_side(bench, preset, side, device, dtype)
    _apply_options(built.model, bench, recompute, compile)
    optimizer = _adamw(built.model)
    with fastest_sdpa(device_type):
        for _ in range(2):
            optimizer_step(optimizer, built.loss)
    synchronize(device_type)
    return peak_memory_bytes(device_type) - base


def _memory_in_subprocess(bench: StepBenchmark, side: str, argv: list[str]) -> int:
    script = inspect.getfile(bench.build)
    out = subprocess.run([sys.executable, script, *argv, "--measure-memory", side],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"measuring the memory of {side} ({script}) failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_bytes"]


def resolve(bench: StepBenchmark, args: argparse.Namespace) -> tuple[str, str, Preset, torch.dtype]:
    device_type = resolve_device_type(args.device)
    name = args.preset or bench.default_preset.get(device_type, "cpu")
    if name not in bench.presets:
        raise SystemExit(f"--preset {name!r}: {bench.model} has presets {', '.join(bench.presets)}")
    preset = bench.presets[name]
    preset = dataclasses.replace(preset, seq=args.seq or preset.seq, batch=args.batch or preset.batch)
    return device_type, name, preset, DTYPES[args.dtype] if args.dtype else _default_dtype(device_type)


def _default_dtype(device_type: str) -> torch.dtype:
    return torch.float32 if device_type == "cpu" else torch.bfloat16


def run(bench: StepBenchmark, args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    device_type, preset_name, preset, dtype = resolve(bench, args)
    device = local_device(device_type, 0)
    ref = bench.reference
    reference = build_side(bench, preset, "reference", device, dtype)
    ours = build_side(bench, preset, OURS, device, dtype)
    ours.model.load_state_dict(reference.model.state_dict())

    counted = {}
    with fastest_sdpa(device_type):
        for name, side in ((OURS, ours), (ref, reference)):
            counted[name] = count_flops(lambda side=side: side.loss().backward())
            side.model.zero_grad(set_to_none=True)
    model_flops = counted[ref]

    first_loss, seconds = _time_steps(bench, args, device_type, {OURS: ours, ref: reference})
    del ours, reference

    limit, limit_source = peak_flops(device_type, dtype)
    memory = ({name: _memory_in_subprocess(bench, "reference" if name == ref else OURS, argv) for name in (OURS, ref)}
              if args.memory else {})
    tokens = bench.tokens(preset)
    sides = {}
    for name in (OURS, ref):
        flops_per_s = model_flops / seconds[name]
        sides[name] = {"step_time_s": seconds[name], "tokens_per_s": tokens / seconds[name],
                       "peak_memory_gib": memory[name] / 2**30 if memory else None,
                       "model_flops_per_s": flops_per_s, "mfu": flops_per_s / limit if limit else 0.0,
                       "first_step_loss": first_loss[name], "counted_flops_per_step": counted[name]}
    result = {
        "benchmark": f"{bench.model} training step (forward, backward, AdamW): ours vs {ref}",
        "environment": report.environment(device_type),
        "settings": {"model": bench.model, "reference": ref, "preset": preset_name, "device": device_type,
                     "dtype": str(dtype).removeprefix("torch."), "seq": preset.seq, "batch": preset.batch,
                     **preset.extra, "tokens_per_step": tokens, "recompute": args.recompute,
                     "compile": args.compile, "steps": args.steps, "warmup_steps": args.warmup,
                     "implementations": bench.describe,
                     "config": preset.config},
        "limit": {"flops_per_s": limit, "source": limit_source},
        "model_flops_per_step": model_flops,
        "sides": sides,
        "ratio": {"step_time": seconds[OURS] / seconds[ref],
                  "tokens_per_s": seconds[ref] / seconds[OURS],
                  "peak_memory": memory[OURS] / memory[ref] if memory else None},
        "first_loss_relative_difference": abs(first_loss[OURS] - first_loss[ref]) / max(abs(first_loss[ref]), 1e-12),
        "command": "python " + shlex.join([_relative(inspect.getfile(bench.build)), *argv]),
    }
    result["goals"] = [{"goal": goal.describe(ref), "value": goal.value(result), "met": goal.met(goal.value(result))}
                       for goal in bench.goals
                       if goal.device_type == device_type and goal.preset == preset_name
                       and preset == bench.presets[preset_name] and dtype == _default_dtype(device_type)
                       and (goal.metric != "peak_memory" or memory)]
    return result


def _time_steps(bench: StepBenchmark, args: argparse.Namespace, device_type: str,
                sides: dict[str, Side]) -> tuple[dict, dict]:
    for side in sides.values():
        _apply_options(side.model, bench, args.recompute, args.compile)
    steps = {}
    for name, side in sides.items():
        optimizer = _adamw(side.model)
        steps[name] = lambda optimizer=optimizer, side=side: optimizer_step(optimizer, side.loss)
    with fastest_sdpa(device_type):
        return time_alternating(steps, args.steps, sync=lambda: synchronize(device_type), warmup=args.warmup)


def _relative(path: str) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return path


def markdown(result: dict[str, Any]) -> str:
    env, settings, sides = result["environment"], result["settings"], result["sides"]
    ref = settings["reference"]
    fmt = report.fmt

    def row(label, key, ratio_key=None, scale=1.0):
        values = [sides[name][key] for name in (OURS, ref)]
        cells = ["n/a" if v is None else fmt(v * scale) for v in values]
        ratio = result["ratio"].get(ratio_key) if ratio_key else None
        return [label, *cells, "" if ratio is None else f"{ratio:.3f}"]

    limit = result["limit"]
    rows = [row("step time (s)", "step_time_s", "step_time"),
            row("tokens/s", "tokens_per_s", "tokens_per_s"),
            row("peak memory (GiB)", "peak_memory_gib", "peak_memory"),
            row("model TFLOP/s", "model_flops_per_s", scale=1e-12),
            row("MFU (% of the limit)", "mfu", scale=100),
            ["first-step loss", *(f"{sides[name]['first_step_loss']:.6f}" for name in (OURS, ref)),
             f"rel. diff {result['first_loss_relative_difference']:.1e}"]]
    parts = [f"# {settings['model']}: training step, ours vs {ref}", "",
             f"{env['hardware']} · torch {env['torch']} · commit `{env['commit']}` · {env['date']} · "
             f"{settings['dtype']} · seq {settings['seq']} · batch {settings['batch']} · "
             f"recompute {settings['recompute']} · compile {settings['compile']}", "",
             report.markdown_table(["", "ours", ref, f"ours / {ref}"], rows), "",
             f"Limit: {fmt(limit['flops_per_s'] / 1e12)} TFLOP/s ({limit['source']}). "
             f"Model FLOPs per step: {fmt(result['model_flops_per_step'])} (counted on the {ref} step; "
             f"ours counted {fmt(sides[OURS]['counted_flops_per_step'])}).", ""]
    if result["goals"]:
        parts += ["Goals:", ""] + [f"- {g['goal']}: {g['value']:.3f} — {'met' if g['met'] else 'NOT met'}"
                                   for g in result["goals"]] + [""]
    parts += ["## Settings", "", report.settings_table({k: v for k, v in settings.items() if k != "config"}), "",
              "Model config:", "", "```json", json.dumps(settings["config"], indent=1), "```", "",
              "## Reproduce", "", f"`{result['command']}`"]
    return "\n".join(parts)


def result_stem(bench: StepBenchmark, result: dict[str, Any]) -> str:
    """<model>_<hardware>_<date>; a preset other than the device's default is named after the model."""
    settings, env = result["settings"], result["environment"]
    default = bench.default_preset.get(settings["device"], "cpu")
    name = bench.model if settings["preset"] == default else f"{bench.model}-{settings['preset']}"
    return f"{name}_{env['hardware_short']}_{env['date']}"


def parser(bench: StepBenchmark) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=f"{bench.model} training step, ours vs {bench.reference}. "
                                f"Presets: {', '.join(bench.presets)}.")
    p.add_argument("--preset", default=None, help="default: per device type " + str(bench.default_preset or "cpu"))
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or npu")
    p.add_argument("--dtype", choices=sorted(DTYPES), default=None, help="default fp32 on CPU, bf16 on accelerators")
    p.add_argument("--seq", type=int, default=None, help="override the preset's sequence length")
    p.add_argument("--batch", type=int, default=None, help="override the preset's batch")
    p.add_argument("--steps", type=int, default=bench.steps, help="timed steps per side")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per side first (the first gives the loss)")
    p.add_argument("--recompute", action="store_true", help="recompute the blocks' activations (both sides)")
    p.add_argument("--compile", action="store_true", help="torch.compile each block (both sides)")
    p.add_argument("--no-memory", dest="memory", action="store_false", help="skip the peak-memory subprocesses")
    p.add_argument("--out-dir", default=None, help="default: results/ beside the benchmark script")
    p.add_argument("--no-write", dest="write", action="store_false", help="print only")
    p.add_argument("--measure-memory", choices=[OURS, "reference"], help=argparse.SUPPRESS)
    return p


def run_and_write(bench: StepBenchmark, argv: list[str]) -> tuple[dict[str, Any], list[Path]]:
    """Run, print the table and write <stem>.json / .md (unless --no-write); returns the result and files."""
    args = parser(bench).parse_args(argv)
    result = run(bench, args, argv)
    text = markdown(result)
    print(text, flush=True)
    if not args.write:
        return result, []
    out_dir = Path(args.out_dir) if args.out_dir else Path(inspect.getfile(bench.build)).parent / "results"
    paths = list(report.write(out_dir, result_stem(bench, result), result, text))
    print("\nwritten: " + ", ".join(str(p) for p in paths), flush=True)
    return result, paths


def main(bench: StepBenchmark, argv: Optional[list[str]] = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser(bench).parse_args(argv)
    if args.measure_memory:
        device_type, _, preset, dtype = resolve(bench, args)
        peak = measure_memory(bench, preset, args.measure_memory, device_type, dtype, args.recompute, args.compile)
        print(json.dumps({"peak_bytes": peak}))
        return
    run_and_write(bench, argv)
