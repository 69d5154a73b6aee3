"""Memory per rank of one long sequence, CP=1 (one process) vs Ulysses CP=2 (two CPU ranks).

    python benchmarks/context_parallel_memory.py [--seq 8192] [--hidden 256] [--layers 4] [--out FILE]

A Qwen3 of the given size (8 heads / 2 kv heads of 32, fp32, random init) runs forward + backward
of one row of --seq tokens through the training loss; with CP=2 each rank holds half the row
(shardzoo.data.context_split) and attention runs on half the heads (shardzoo.parallel.context).
Per rank it prints:

  activations   bytes the autograd graph saves for backward (parameters excluded; each storage
                counted once, the exact activation footprint)
  peak growth   the process's peak RSS during the step over its RSS before it (activations,
                gradients, temporaries, allocator slack)

The activation ratio CP=2 / CP=1 should be about 0.5: everything a rank saves is either per local
token or, inside attention, per (token, local head).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def worker(args: argparse.Namespace, out: Path) -> None:
    import torch
    import torch.distributed as dist
    from shardzoo.data.context_split import split_sequence
    from shardzoo.data.loader import collate
    from shardzoo.data.rows import sample_row
    from shardzoo.device import process_memory_bytes, reset_peak_memory
    from shardzoo.parallel import apply_context_parallel, build_meshes, init_distributed, shutdown_distributed
    from shardzoo.registry import load_spec
    from shardzoo.testing.context_parallel import tiny_model
    from shardzoo.train.task import CausalLMTask

    rank, _, world = init_distributed("cpu")
    config = dict(hidden_size=args.hidden, intermediate_size=3 * args.hidden, num_hidden_layers=args.layers,
                  num_attention_heads=8, num_key_value_heads=2, head_dim=32, vocab_size=4096,
                  max_position_embeddings=args.seq)
    model = tiny_model("qwen3", config)
    if world > 1:
        meshes = build_meshes("cpu", 1, world, 1, 1, cp=world)
        apply_context_parallel(model, list(load_spec("qwen3").plan.cp_modules), meshes.cp)
    gen = torch.Generator().manual_seed(0)
    row = sample_row(torch.randint(1, 4096, (args.seq,), generator=gen).numpy(), torch.ones(args.seq).bool().numpy())
    batch = collate([row], pad_id=0, pad_to_multiple_of=world)
    if world > 1:
        batch = split_sequence(batch, rank, world)
    task = CausalLMTask(model, chunk_size=1024)

    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    dist.barrier()
    before = process_memory_bytes("VmRSS")
    reset_peak_memory("cpu")
    start = time.perf_counter()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = task(batch.input_ids, batch.targets, normalizer=float(args.seq), position_ids=batch.position_ids,
                    token_mask=batch.token_mask)
    loss.backward()
    seconds = time.perf_counter() - start
    peak = process_memory_bytes("VmHWM") - before
    results = [None] * world
    dist.all_gather_object(results, {"rank": rank, "tokens": int(batch.input_ids.numel()),
                                     "activation_bytes": sum(saved.values()), "peak_rss_growth_bytes": peak,
                                     "step_seconds": seconds})
    if rank == 0:
        out.write_text(json.dumps(results))
    shutdown_distributed()


def measure(args: argparse.Namespace, cp: int) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ranks.json"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(cp), __file__,
               "--worker", str(out), "--seq", str(args.seq), "--hidden", str(args.hidden), "--layers",
               str(args.layers)]
        proc = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"cp={cp}: the ranks failed (exit {proc.returncode}):\n{proc.stderr[-6000:]}")
        return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seq", type=int, default=8192)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.worker:
        worker(args, args.worker)
        return
    runs = {cp: measure(args, cp) for cp in (1, 2)}
    mib = 2**20
    one = runs[1][0]
    print(f"Qwen3 H{args.hidden} L{args.layers} 8 heads / 2 kv, one row of {args.seq} tokens, fp32, forward + backward")
    for cp, ranks in runs.items():
        for r in ranks:
            act, peak = r["activation_bytes"], r["peak_rss_growth_bytes"]
            print(f"  cp={cp} rank {r['rank']}: {r['tokens']:6d} tokens | activations {act / mib:8.1f} MiB "
                  f"({act / one['activation_bytes']:.2f}x cp=1) | peak growth {peak / mib:8.1f} MiB "
                  f"({peak / one['peak_rss_growth_bytes']:.2f}x) | step {r['step_seconds']:.2f} s")
    worst = max(runs[2], key=lambda r: r["activation_bytes"])
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO).stdout
    result = {"benchmark": "per-rank memory of one long row, Qwen3, CP=1 vs Ulysses CP=2 (CPU, fp32)",
              "hardware": f"{platform.machine()} CPU, {os.cpu_count()} cores, 1 thread per rank",
              "commit": commit.strip(), "config": {"seq": args.seq, "hidden": args.hidden, "layers": args.layers,
                                                   "heads": 8, "kv_heads": 2, "head_dim": 32, "vocab": 4096},
              "runs": {str(cp): ranks for cp, ranks in runs.items()},
              "activation_ratio_cp2_over_cp1": worst["activation_bytes"] / one["activation_bytes"],
              "peak_growth_ratio_cp2_over_cp1": max(r["peak_rss_growth_bytes"] for r in runs[2])
              / one["peak_rss_growth_bytes"]}
    print(f"activation share per rank, cp=2 / cp=1: {result['activation_ratio_cp2_over_cp1']:.3f}; "
          f"peak growth: {result['peak_growth_ratio_cp2_over_cp1']:.3f}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
