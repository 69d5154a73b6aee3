"""Every benchmark of the zoo in one command: each model's training step against its reference
implementation (models/<name>/benchmarks/bench_step.py, the presets its `suite` names for this
device type), then every op backend against its reference. Each writes its own result files; this
writes a summary table of all of them.

    python benchmarks/run.py [--models qwen3 wan] [--device auto] [--steps 3] [--no-ops]

Output: models/<name>/benchmarks/results/<model>_<hardware>_<date>.{json,md},
benchmarks/results/ops_<hardware>_<date>.{json,md} and benchmarks/results/summary_<hardware>_<date>.{json,md}.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

from shardzoo.bench import ops, report
from shardzoo.bench.step import OURS, run_and_write

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def step_benchmarks() -> dict[str, Path]:
    return {path.parent.parent.name: path for path in sorted(ROOT.glob("models/*/benchmarks/bench_step.py"))}


def load(path: Path):
    spec = importlib.util.spec_from_file_location(f"bench_step_{path.parent.parent.name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.BENCHMARK


def summary_row(result: dict, files: list[Path]) -> list[str]:
    settings, sides, ratio = result["settings"], result["sides"], result["ratio"]
    fmt, ref = report.fmt, settings["reference"]
    goals = "; ".join(f"{g['goal']}: {g['value']:.3f} {'met' if g['met'] else 'NOT met'}" for g in result["goals"])
    memory = "n/a" if ratio["peak_memory"] is None else f"{ratio['peak_memory']:.3f}"
    link = files[1].relative_to(ROOT) if files else ""
    return [settings["model"], settings["preset"], f"{settings['seq']} x {settings['batch']}", ref,
            fmt(sides[OURS]["step_time_s"]), fmt(sides[ref]["step_time_s"]), f"{ratio['step_time']:.3f}",
            fmt(sides[OURS]["tokens_per_s"]), memory, f"{100 * sides[OURS]['mfu']:.1f}",
            f"{100 * sides[ref]['mfu']:.1f}", goals or "-", str(link)]


def main() -> None:
    benches = step_benchmarks()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="*", choices=sorted(benches), default=sorted(benches))
    p.add_argument("--device", default="auto")
    p.add_argument("--steps", type=int, default=None, help="timed steps per side (default: each benchmark's)")
    p.add_argument("--no-ops", dest="ops", action="store_false")
    args = p.parse_args()

    rows, results = [], []
    device_type = None
    for name in args.models:
        bench = load(benches[name])
        from shardzoo.device import resolve_device_type

        device_type = resolve_device_type(args.device)
        for preset in bench.suite_presets(device_type):
            print(f"\n=== {name} ({preset})", flush=True)
            steps = [] if args.steps is None else ["--steps", str(args.steps)]
            result, files = run_and_write(bench, ["--device", args.device, "--preset", preset, *steps])
            results.append(result)
            rows.append(summary_row(result, files))
    ops_result = ops.main(["--device", args.device, "--out-dir", str(RESULTS.relative_to(Path.cwd()))
                           if RESULTS.is_relative_to(Path.cwd()) else str(RESULTS)]) if args.ops else None

    env = (results[0] if results else ops_result)["environment"]
    limit = results[0]["limit"] if results else None
    text = "\n".join([
        "# shardzoo benchmarks: our training step vs the reference implementation", "",
        f"{env['hardware']} · torch {env['torch']} · commit `{env['commit']}` · {env['date']}", "",
        report.markdown_table(["model", "preset", "seq x batch", "reference", "ours s/step", "reference s/step",
                               "step time ratio", "ours tokens/s", "peak memory ratio", "ours MFU %",
                               "reference MFU %", "goals", "details"], rows), "",
        (f"MFU: model FLOPs (counted on the reference's step) per second over the limit, "
         f"{report.fmt(limit['flops_per_s'] / 1e12)} TFLOP/s ({limit['source']})." if limit else ""),
        "Ops: " + (f"benchmarks/results/ops_{env['hardware_short']}_{env['date']}.md" if ops_result else "not run"),
        "", f"Reproduce: `python benchmarks/run.py --models {' '.join(args.models)} --device {args.device}"
            f"{'' if args.steps is None else f' --steps {args.steps}'}{'' if args.ops else ' --no-ops'}`"])
    print("\n" + text)
    paths = report.write(RESULTS, f"summary_{env['hardware_short']}_{env['date']}",
                         {"environment": env, "steps": results, "ops": ops_result}, text)
    print("\nwritten: " + ", ".join(str(p) for p in paths))


if __name__ == "__main__":
    main()
