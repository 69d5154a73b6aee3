"""`shardzoo train|ops|models` (export and new-model arrive with their issues)."""

from __future__ import annotations

import argparse
import logging
import sys

from .config import ConfigError, load_config


def _train(args: argparse.Namespace) -> int:
    from .train import train

    cfg = load_config(args.config, args.overrides)
    train(cfg)
    return 0


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shardzoo", description="FSDP2 training for the shardzoo model zoo")
    sub = parser.add_subparsers(dest="command", required=True)
    p_train = sub.add_parser("train", help="train from a YAML config; override keys with --section.key VALUE")
    p_train.add_argument("config")
    p_train.add_argument("overrides", nargs=argparse.REMAINDER)
    p_train.set_defaults(fn=_train)
    p_ops = sub.add_parser("ops", help="print the fused ops and the backend bound on this machine")
    p_ops.add_argument("--device", default="auto")
    p_ops.set_defaults(fn=_ops)
    p_models = sub.add_parser("models", help="list installed model packages")
    p_models.set_defaults(fn=_models)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.fn(args)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
