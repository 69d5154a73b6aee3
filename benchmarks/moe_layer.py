"""MoE experts layer, forward + backward: the grouped-GEMM path (torch._grouped_mm) vs the reference
loop (one matmul per expert), same weights, same routing, in one process.

    python benchmarks/moe_layer.py [--tokens 4096] [--hidden 512] [--inter 512] [--experts 32] [--top-k 4]
                                   [--device cpu|cuda|npu] [--dtype fp32|bf16]

The layer is shardzoo.moe.GroupedExperts with GPT-OSS's layout and activation (biases, clamped
SwiGLU); only the grouped_mm backend differs. Median of --reps timed repetitions after a warm-up,
the device synchronised around each. MFU counts the expert matmuls (18 x hidden x inter FLOPs per
routed token: gate/up and down, forward and backward) against the device's peak.
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from shardzoo import device as devices
from shardzoo import ops
from shardzoo.moe import GroupedExperts, topk_then_softmax

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def run(backend: str, layer, x, indices, weights, probe, reps: int, device_type: str) -> tuple[float, torch.Tensor]:
    ops.grouped_mm.bind(device_type, backend)
    times = []
    for i in range(reps + 1):
        layer.zero_grad(set_to_none=True)
        devices.synchronize(device_type)
        start = time.perf_counter()
        out = layer(x, indices, weights)
        (out * probe).sum().backward()
        devices.synchronize(device_type)
        if i:
            times.append(time.perf_counter() - start)
    ops.grouped_mm.bind(device_type)
    return statistics.median(times), layer.gate_up_proj.grad.float().cpu()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--inter", type=int, default=512)
    parser.add_argument("--experts", type=int, default=32)
    parser.add_argument("--top-k", type=int, default=4)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or npu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    device, dtype = torch.device(devices.resolve_device_type(args.device)), DTYPES[args.dtype]
    torch.manual_seed(0)
    activation = functools.partial(ops.clipped_swiglu, alpha=1.702, limit=7.0)
    layer = GroupedExperts(args.experts, args.hidden, args.inter, activation, bias=True, in_out_layout=True)
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_(0, 0.02)
    layer.to(device, dtype)
    x = torch.randn(args.tokens, args.hidden, device=device, dtype=dtype)
    weights, indices = topk_then_softmax(torch.randn(args.tokens, args.experts, device=device), args.top_k)
    weights = weights.to(dtype)
    probe = torch.randn(args.tokens, args.hidden, device=device, dtype=dtype)
    loop, grad_loop = run("reference", layer, x, indices, weights, probe, args.reps, device.type)
    grouped, grad_grouped = run("torch_grouped_mm", layer, x, indices, weights, probe, args.reps, device.type)
    flops = 18 * args.tokens * args.top_k * args.hidden * args.inter
    peak, source = devices.peak_flops(device.type, dtype)
    mfu = {name: (flops / t / peak if peak else 0.0) for name, t in (("reference_loop", loop),
                                                                        ("torch_grouped_mm", grouped))}
    result = {"benchmark": f"MoE experts layer fwd+bwd, {args.dtype}, {device.type}", "config": vars(args),
              "machine": f"{platform.machine()}, {devices.device_name(device.type)}", "torch": torch.__version__,
              "time_s": {"reference_loop": loop, "torch_grouped_mm": grouped, "ratio_grouped_to_loop": grouped / loop},
              "mfu": mfu, "peak_flops": peak, "peak_source": source,
              "max_abs_grad_difference": float((grad_loop - grad_grouped).abs().max())}
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
