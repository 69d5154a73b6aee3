"""MoE experts layer, forward + backward on the CPU: the grouped-GEMM path (torch._grouped_mm) vs
the reference loop (one matmul per expert), same weights, same routing, in one process.

    python benchmarks/moe_layer.py [--tokens 4096] [--hidden 512] [--inter 512] [--experts 32] [--top-k 4]

The layer is shardzoo.moe.GroupedExperts with GPT-OSS's layout and activation (biases, clamped
SwiGLU); only the grouped_mm backend differs. Median of --reps timed repetitions after a warm-up.
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
from shardzoo import ops
from shardzoo.moe import GroupedExperts, topk_then_softmax


def run(backend: str, layer, x, indices, weights, probe, reps: int) -> tuple[float, torch.Tensor]:
    ops.grouped_mm.bind("cpu", backend)
    times = []
    for i in range(reps + 1):
        layer.zero_grad(set_to_none=True)
        start = time.perf_counter()
        out = layer(x, indices, weights)
        (out * probe).sum().backward()
        if i:
            times.append(time.perf_counter() - start)
    ops.grouped_mm.bind("cpu")
    return statistics.median(times), layer.gate_up_proj.grad.clone()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--inter", type=int, default=512)
    parser.add_argument("--experts", type=int, default=32)
    parser.add_argument("--top-k", type=int, default=4)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.manual_seed(0)
    activation = functools.partial(ops.clipped_swiglu, alpha=1.702, limit=7.0)
    layer = GroupedExperts(args.experts, args.hidden, args.inter, activation, bias=True, in_out_layout=True)
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_(0, 0.02)
    x = torch.randn(args.tokens, args.hidden)
    weights, indices = topk_then_softmax(torch.randn(args.tokens, args.experts), args.top_k)
    probe = torch.randn(args.tokens, args.hidden)
    loop, grad_loop = run("reference", layer, x, indices, weights, probe, args.reps)
    grouped, grad_grouped = run("torch_grouped_mm", layer, x, indices, weights, probe, args.reps)
    result = {"benchmark": "MoE experts layer fwd+bwd, fp32, CPU", "config": vars(args),
              "machine": f"{platform.machine()}, {torch.get_num_threads()} threads", "torch": torch.__version__,
              "time_s": {"reference_loop": loop, "torch_grouped_mm": grouped, "ratio_grouped_to_loop": grouped / loop},
              "max_abs_grad_difference": float((grad_loop - grad_grouped).abs().max())}
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
