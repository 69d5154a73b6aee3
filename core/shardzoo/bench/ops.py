"""Every backend of every op against the op's reference, forward + backward, on this machine.

    python -m shardzoo.bench.ops [--device auto] [--dtype fp32|bf16] [--tokens N] [--out-dir DIR]

Each op's example input (`Op.set_example`, typical training shapes for N tokens) runs through the
reference and through each backend that can run here, calls alternated, median per side. Backends
that cannot run here are listed with the reason. The forward's largest difference from the
reference is printed beside the time as a sanity check; parity is the tests' job.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Optional

import torch

from ..device import local_device, resolve_device_type, synchronize
from ..ops import OPS
from ..ops.attention import fastest_sdpa
from ..ops.dispatch import REFERENCE, Op
from . import report
from .timing import time_alternating

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def _tensors(value) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for item in value for t in _tensors(item)]
    return []


def _differentiable(value) -> list[torch.Tensor]:
    return [t for t in _tensors(value) if t.is_floating_point() and t.requires_grad]


def _fwd_bwd(fn, args: tuple, kwargs: dict, out_grads: list[torch.Tensor]) -> float:
    outputs = _differentiable(fn(*args, **kwargs))
    torch.autograd.backward(outputs, out_grads)
    for tensor in _tensors(args):
        tensor.grad = None
    return 0.0


def bench_op(op: Op, device_type: str, dtype: torch.dtype, tokens: int, repeats: int) -> list[dict[str, Any]]:
    if op.example is None:
        raise ValueError(f"op {op.name!r} registers no example input (Op.set_example); every op needs one")
    torch.manual_seed(0)
    with local_device(device_type, 0):
        args, kwargs = op.example(tokens, dtype)
        reference_out = op.backends[REFERENCE].fn(*args, **kwargs)
        out_grads = [torch.randn_like(t) for t in _differentiable(reference_out)]
    reference_out = [t.detach() for t in _tensors(reference_out)]
    sync = lambda: synchronize(device_type)  # noqa: E731
    rows = []
    for backend in op.backends.values():
        if backend.name == REFERENCE:
            continue
        row = {"op": op.name, "backend": backend.name}
        reason = backend.why_not(device_type)
        if reason is not None:
            rows.append({**row, "status": "unavailable", "note": reason})
            continue
        try:
            out = [t.detach() for t in _tensors(backend.fn(*args, **kwargs))]
            diff = max(float((a.float() - b.float()).abs().max()) for a, b in zip(out, reference_out))
            with fastest_sdpa(device_type):
                _, seconds = time_alternating(
                    {REFERENCE: lambda: _fwd_bwd(op.backends[REFERENCE].fn, args, kwargs, out_grads),
                     backend.name: lambda b=backend: _fwd_bwd(b.fn, args, kwargs, out_grads)}, repeats, sync)
        except (RuntimeError, ValueError) as exc:
            rows.append({**row, "status": "failed", "note": str(exc).splitlines()[0][:200]})
            continue
        rows.append({**row, "status": "timed", "reference_ms": seconds[REFERENCE] * 1e3,
                     "backend_ms": seconds[backend.name] * 1e3,
                     "ratio": seconds[backend.name] / seconds[REFERENCE], "max_abs_diff": diff,
                     "shapes": [list(t.shape) for t in _tensors(args)]})
    if not rows:
        rows.append({"op": op.name, "backend": "-", "status": "reference only", "note": "no other backend registered"})
    return rows


def markdown(result: dict[str, Any]) -> str:
    env, settings = result["environment"], result["settings"]
    fmt = report.fmt
    table = []
    for row in result["rows"]:
        if row["status"] == "timed":
            table.append([row["op"], row["backend"], fmt(row["reference_ms"]), fmt(row["backend_ms"]),
                          f"{row['ratio']:.3f}", fmt(row["max_abs_diff"]), ""])
        else:
            table.append([row["op"], row["backend"], "", "", "", "", f"{row['status']}: {row['note']}"])
    return "\n".join([
        "# Ops: every backend vs its reference, forward + backward", "",
        f"{env['hardware']} · torch {env['torch']} · commit `{env['commit']}` · {env['date']} · "
        f"{settings['dtype']} · {settings['tokens']} tokens per example · median of {settings['repeats']}", "",
        report.markdown_table(["op", "backend", "reference ms", "backend ms", "backend / reference",
                               "max abs diff (fwd)", "note"], table), "",
        "Inputs: each op's example (`Op.set_example` in its file) at the stated tokens.", "",
        f"Reproduce: `{result['command']}`"])


def main(argv: Optional[list[str]] = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", choices=sorted(DTYPES), default=None, help="default fp32 on CPU, bf16 on accelerators")
    p.add_argument("--tokens", type=int, default=None, help="default 512 on CPU, 8192 on accelerators")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--ops", nargs="*", default=None, help="only these ops (default: all)")
    p.add_argument("--out-dir", default=None, help="write ops_<hardware>_<date>.json/.md here")
    args = p.parse_args(argv)
    device_type = resolve_device_type(args.device)
    dtype = DTYPES[args.dtype or ("fp32" if device_type == "cpu" else "bf16")]
    tokens = args.tokens or (512 if device_type == "cpu" else 8192)
    unknown = sorted(set(args.ops or []) - set(OPS))
    if unknown:
        raise SystemExit(f"--ops: unknown {', '.join(unknown)}; ops are {', '.join(OPS)}")
    rows = []
    for name, op in OPS.items():
        if args.ops is None or name in args.ops:
            rows += bench_op(op, device_type, dtype, tokens, args.repeats)
    command = "python -m shardzoo.bench.ops " + " ".join(argv if argv is not None else __import__("sys").argv[1:])
    result = {"benchmark": "ops: backends vs reference, forward + backward",
              "environment": report.environment(device_type),
              "settings": {"device": device_type, "dtype": str(dtype).removeprefix("torch."), "tokens": tokens,
                           "repeats": args.repeats},
              "rows": rows, "command": command.strip()}
    text = markdown(result)
    print(text)
    if args.out_dir:
        env = result["environment"]
        paths = report.write(Path(args.out_dir), f"ops_{env['hardware_short']}_{env['date']}", result, text)
        print("\nwritten: " + ", ".join(str(p) for p in paths))
    return result


if __name__ == "__main__":
    main()
