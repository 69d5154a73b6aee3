"""`shardzoo train|export|ops|models|plan|new-model`."""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import time
from pathlib import Path

from .config import load_config
from .errors import ConfigError, ShardzooError

DEBUG_ENV = "SHARDZOO_DEBUG"
"""Set to 1 to see the traceback behind a one-line user error."""


def _train(args: argparse.Namespace) -> int:
    from .train import train

    cfg = load_config(args.config, args.overrides)
    train(cfg)
    return 0


def _export(args: argparse.Namespace) -> int:
    from .checkpoint.export import export_hf, resolve_checkpoint
    from .device import rank_info
    from .parallel import gather_objects, init_distributed, shutdown_distributed
    from .train.hf_config import checkpoint_model

    checkpoint = resolve_checkpoint(Path(args.checkpoint))
    adapter, hf_config = checkpoint_model(checkpoint)
    # Under torchrun the ranks write disjoint weight files (CPU work: gloo carries the few messages).
    rank, _, world = rank_info()
    if world > 1:
        init_distributed("cpu")
    try:
        export_hf(checkpoint, Path(args.out_dir), adapter=adapter, hf_config=hf_config, dtype=args.dtype,
                  max_shard_bytes=args.max_shard_size, overwrite=args.overwrite, rank=rank, world=world,
                  gather=gather_objects if world > 1 else None)
    finally:
        if world > 1:
            shutdown_distributed()
    if rank == 0:
        print(f"wrote {args.out_dir}")
    return 0


def parse_size(text: str) -> int:
    """'5GB', '500MB', '1.5G', '1048576' -> bytes (powers of 1024, as HF's max_shard_size)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*", text, flags=re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size like 5GB, 500MB or 1048576")
    return int(float(m.group(1)) * 1024 ** " KMGT".index(m.group(2).upper() or " "))


def _ops(args: argparse.Namespace) -> int:
    from . import device as devices
    from .ops import ops_table

    device_type = devices.resolve_device_type(args.device)
    rows = [("op", "backend", "status", "note")] + ops_table(device_type)
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    print(f"device: {device_type}")
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0


def _models(args: argparse.Namespace) -> int:
    from importlib.metadata import PackageNotFoundError, version

    from .registry import load_spec, registered

    eps = registered()
    if not eps:
        print("no model packages installed (pip install -e models/<name>)")
    for name, ep in sorted(eps.items()):
        spec = load_spec(name)
        dist_name = ep.dist.name if ep.dist is not None else "?"
        try:
            ver = version(dist_name)
        except PackageNotFoundError:
            ver = "?"
        print(f"{name}  {dist_name} {ver}  architectures: {', '.join(spec.architectures)}")
    return 0


def _new_model(args: argparse.Namespace) -> int:
    from .scaffold import new_model

    models_dir = Path(args.models_dir)
    written = new_model(args.name, args.template, models_dir, new_class=args.class_prefix,
                        template_class=args.template_class)
    dest = models_dir / args.name
    print(f"wrote {len(written)} files to {dest} (from {models_dir / args.template})")
    print("next:")
    print(f"  pip install -e {dest}")
    print(f"  pytest {dest}/tests          # parity and golden loss pass before any change")
    print("  then edit the modeling file and the spec as models/README.md lists, and regenerate the golden loss")
    return 0


def _plot(args: argparse.Namespace) -> int:
    from .plot import plot_runs

    runs = [Path(r) for r in args.runs]
    out = Path(args.out) if args.out else runs[0] / "metrics.png"
    print(f"wrote {plot_runs(runs, out)}")
    return 0


def _plan(args: argparse.Namespace) -> int:
    from .plan import format_plan, plan_memory

    cfg = load_config(args.config, args.overrides)
    if args.world_size < 1:
        raise ConfigError(f"--world-size: {args.world_size} must be >= 1")
    print(format_plan(plan_memory(cfg, args.world_size), args.device_memory))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shardzoo", description="FSDP2 training for the shardzoo model zoo")
    sub = parser.add_subparsers(dest="command", required=True)
    p_train = sub.add_parser("train", help="train from a YAML config; override keys with --section.key VALUE")
    p_train.add_argument("config")
    p_train.add_argument("overrides", nargs=argparse.REMAINDER)
    p_train.set_defaults(fn=_train)
    p_export = sub.add_parser("export", help="write a checkpoint's model as a Hugging Face folder")
    p_export.add_argument("checkpoint", help="checkpoint-<step> directory, or an output_dir (its newest checkpoint)")
    p_export.add_argument("out_dir")
    p_export.add_argument("--format", choices=["hf"], required=True)
    p_export.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                          help="auto: config.json's dtype, else the trained dtype")
    p_export.add_argument("--max-shard-size", default="5GB", type=parse_size, help="largest weight file (5GB)")
    p_export.add_argument("--overwrite", action="store_true", help="replace a non-empty out_dir")
    p_export.set_defaults(fn=_export)
    p_ops = sub.add_parser("ops", help="print the fused ops and the backend bound on this machine")
    p_ops.add_argument("--device", default="auto")
    p_ops.set_defaults(fn=_ops)
    p_plan = sub.add_parser("plan", help="dry run: per-rank memory of a config's parallel plan (meta device, "
                            "fake process group, no weights)")
    p_plan.add_argument("config")
    p_plan.add_argument("--world-size", type=int, required=True, help="number of ranks (devices)")
    p_plan.add_argument("--device-memory", type=parse_size, default=None,
                        help="memory per device, e.g. 64GB (910B) or 80GB (H100): say whether the plan fits")
    p_plan.set_defaults(fn=_plan)
    p_plot = sub.add_parser("plot", help="loss, lr, grad norm and throughput over steps as a PNG (runs overlaid)")
    p_plot.add_argument("runs", nargs="+", help="training output_dir(s) holding metrics.jsonl")
    p_plot.add_argument("--out", default=None, help="the PNG to write (default: <first run>/metrics.png)")
    p_plot.set_defaults(fn=_plot)
    p_models = sub.add_parser("models", help="list installed model packages")
    p_models.set_defaults(fn=_models)
    p_new = sub.add_parser("new-model", help="copy a model package under a new name (package, classes, configs, "
                           "scripts, tests renamed)")
    p_new.add_argument("name", help="the new family name (lowercase identifier): folder, model_id, shardzoo_<name>")
    p_new.add_argument("--from", dest="template", required=True, help="the model folder to copy, e.g. qwen3")
    p_new.add_argument("--models-dir", default="models", help="where model folders live (models)")
    p_new.add_argument("--class-prefix", default=None, help="class name prefix (default: the name in CamelCase)")
    p_new.add_argument("--template-class", default=None,
                       help="the template's class prefix if it cannot be found (e.g. InternVL)")
    p_new.set_defaults(fn=_new_model)
    # plan mixes its own options with --section.key overrides, so its unknown arguments are the overrides.
    args, extra = parser.parse_known_args(argv)
    if args.command == "plan":
        args.overrides = extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run_reporting_user_errors(args.fn, args)


def run_reporting_user_errors(fn, *args) -> int:
    """fn(*args), with a user error (ShardzooError) reported as one line and exit status 2; the package
    tools (feature extraction, ...) run their main through it too."""
    try:
        return fn(*args) or 0
    except ShardzooError as exc:
        # A user error: one line that names what, where and the fix. Bugs keep their traceback.
        if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
            raise
        report_once_per_job(f"{exc.kind}: {exc}")
        return 2


PEER_REPORT_DELAY_S = 5.0
"""How long a rank other than 0 waits before reporting its error under torchrun."""


def report_once_per_job(line: str) -> None:
    """Print a user error once per job. Under torchrun every rank usually hits the same error (the
    config is the same everywhere); rank 0 reports it, and the launcher stops the other ranks as soon
    as rank 0 exits, so they never print theirs. A rank that failed alone reports after a short wait,
    naming itself."""
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and rank != 0:
        time.sleep(PEER_REPORT_DELAY_S)
        line = f"rank {rank}: {line}"
    print(line, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
