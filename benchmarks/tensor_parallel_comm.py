"""Bytes moved by tensor parallel's collectives in one training step, counted, against the textbook formula;
and (for the record, no goal on a CPU) the step time of TP2 against FSDP2 alone on the same 2 ranks.

    python benchmarks/tensor_parallel_comm.py [--seq 2048] [--hidden 256] [--layers 4] [--steps 4] [--out FILE]

A Qwen3 of the given size (8 heads / 2 kv heads of 32, vocab 4096, fp32, random init) runs forward +
backward of one row of --seq tokens through the training loss on 2 CPU ranks. Every collective a rank
issues is recorded (DTensor's functional collectives and the loss's and norms' direct all-reduces),
with the bytes a rank sends in a ring: all-gather (n-1) x its shard, reduce-scatter and all-reduce
(n-1)/n and 2(n-1)/n of the buffer.

The textbook count (Megatron sequence parallel) per layer and micro-batch: an all-gather before and a
reduce-scatter after attention and after the MLP, each of B x T x H activations, forward and again in
backward (8 per layer); plus the embedding's reduce-scatter and the loss's gather of the final hidden
states (forward and backward: 4). Each moves (tp-1)/tp x B T H x bytes per rank. What the count adds
beyond it is the vocab-parallel loss's two small all-reduces per chunk (row max; exp-sum and target
logit).

The step time runs both layouts in the same processes, alternating (FSDP2: each rank its own row of
--seq tokens; TP2: the two ranks one row together), twice, reporting tokens per second per rank and the
range of the two rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _counter():
    import torch
    import torch.distributed as dist
    from torch.utils._python_dispatch import TorchDispatchMode

    sent: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)

    def record(kind: str, nbytes: int, n: int) -> None:
        share = {"all_gather": n - 1, "reduce_scatter": (n - 1) / n, "all_reduce": 2 * (n - 1) / n}[kind]
        sent[kind] += share * nbytes
        calls[kind] += 1

    class Collectives(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = str(func)
            if "_c10d_functional." in name:
                t = args[0]
                nbytes = t.numel() * t.element_size()
                if "all_gather_into_tensor" in name:
                    record("all_gather", nbytes, args[1])
                elif "reduce_scatter_tensor" in name:
                    record("reduce_scatter", nbytes, args[2])
                elif "all_reduce" in name:
                    record("all_reduce", nbytes, dist.get_world_size())
            return func(*args, **(kwargs or {}))

    plain_all_reduce = dist.all_reduce

    def counted_all_reduce(tensor, *args, group=None, **kwargs):
        record("all_reduce", tensor.numel() * tensor.element_size(), dist.get_world_size(group))
        return plain_all_reduce(tensor, *args, group=group, **kwargs)

    return Collectives, counted_all_reduce, plain_all_reduce, sent, calls, torch


def worker(args: argparse.Namespace, out: Path) -> None:
    import torch
    import torch.distributed as dist
    from shardzoo.data.loader import collate
    from shardzoo.data.rows import sample_row
    from shardzoo.parallel import apply_fsdp, build_meshes, init_distributed, shutdown_distributed
    from shardzoo.parallel.tensor import apply_tensor_parallel
    from shardzoo.registry import load_spec
    from shardzoo.testing.context_parallel import tiny_model
    from shardzoo.train.task import CausalLMTask

    rank, _, world = init_distributed("cpu")
    config = dict(hidden_size=args.hidden, intermediate_size=3 * args.hidden, num_hidden_layers=args.layers,
                  num_attention_heads=8, num_key_value_heads=2, head_dim=32, vocab_size=4096,
                  max_position_embeddings=args.seq)
    gen = torch.Generator().manual_seed(rank)
    row = sample_row(torch.randint(1, 4096, (args.seq,), generator=gen).numpy(), torch.ones(args.seq).bool().numpy())
    batch = collate([row], pad_id=0)
    shared = collate([sample_row(torch.randint(1, 4096, (args.seq,), generator=torch.Generator().manual_seed(0))
                                 .numpy(), torch.ones(args.seq).bool().numpy())], pad_id=0)

    # TP2 over both ranks (the same row), counted.
    model = tiny_model("qwen3", config)
    apply_tensor_parallel(model, load_spec("qwen3").plan.tp, build_meshes("cpu", 1, 1, 1, 1, tp=world).tp,
                          kv_heads=2)
    tp_task = CausalLMTask(model, chunk_size=1024)
    Collectives, counted, plain, sent, calls, _ = _counter()

    def step(task, b) -> None:
        loss = task(b.input_ids, b.targets, normalizer=float(b.num_targets), position_ids=b.position_ids,
                    token_mask=b.token_mask)
        loss.backward()

    dist.all_reduce = counted
    try:
        with Collectives():
            step(tp_task, shared)
    finally:
        dist.all_reduce = plain
    tp_task.zero_grad()

    # FSDP2 alone over the same ranks (each its own row), for the step time.
    fsdp_model = tiny_model("qwen3", config)
    fsdp_task = CausalLMTask(fsdp_model, chunk_size=1024)

    class P:  # the parallel section's FSDP fields, defaults of the schema
        ignored_modules, fsdp_modules, offload_to_cpu, pin_memory = [], ["model.layers.{*}"], False, False
        param_dtype = reduce_dtype = output_dtype = None
        cast_forward_inputs, reshard_after_forward = True, True
        num_to_forward_prefetch = num_to_backward_prefetch = 1

    apply_fsdp(fsdp_task, fsdp_model, build_meshes("cpu", 1, world, 1, 1).dense, P)
    rounds = []
    for _ in range(2):
        times = {"tp2": [], "fsdp2": []}
        for _ in range(args.steps):
            for name, task, b in (("tp2", tp_task, shared), ("fsdp2", fsdp_task, batch)):
                dist.barrier()
                start = time.perf_counter()
                step(task, b)
                dist.barrier()
                times[name].append(time.perf_counter() - start)
                task.zero_grad()
        # tokens per second per rank: TP2 shares one row between the ranks, FSDP2 gives each rank its own
        rounds.append({"tp2": args.seq / world / statistics.median(times["tp2"]),
                       "fsdp2": args.seq / statistics.median(times["fsdp2"])})
    if rank == 0:
        out.write_text(json.dumps({"sent": dict(sent), "calls": dict(calls), "rounds": rounds}))
    shutdown_distributed()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.worker:
        worker(args, args.worker)
        return
    tp = 2
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rank0.json"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(tp), __file__,
               "--worker", str(out), "--seq", str(args.seq), "--hidden", str(args.hidden), "--layers",
               str(args.layers), "--steps", str(args.steps)]
        proc = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"the ranks failed (exit {proc.returncode}):\n{proc.stderr[-6000:]}")
        got = json.loads(out.read_text())
    activation = args.seq * args.hidden * 4  # B x T x H fp32, B = 1
    textbook = (8 * args.layers + 4) * (tp - 1) / tp * activation
    counted = sum(got["sent"].values())
    big = got["sent"].get("all_gather", 0) + got["sent"].get("reduce_scatter", 0)
    mib = 2**20
    print(f"Qwen3 H{args.hidden} L{args.layers}, one row of {args.seq} tokens, fp32, tp {tp}: bytes sent per rank "
          "in one forward + backward")
    for kind in sorted(got["sent"]):
        print(f"  {kind:<15}{got['calls'][kind]:5d} calls {got['sent'][kind] / mib:10.2f} MiB")
    print(f"  counted {counted / mib:.2f} MiB; all-gathers + reduce-scatters {big / mib:.2f} MiB; textbook "
          f"(8L + 4) (tp-1)/tp BTH = {textbook / mib:.2f} MiB (ratio {big / textbook:.3f})")
    tps = [(r["tp2"], r["fsdp2"]) for r in got["rounds"]]
    ratios = [a / b for a, b in tps]
    print("  tokens/s per rank, TP2 vs FSDP2 alone: " + "; ".join(f"{a:.0f} vs {b:.0f}" for a, b in tps)
          + f" (TP2 / FSDP2 {min(ratios):.2f}-{max(ratios):.2f})")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO).stdout
    result = {"benchmark": "tensor parallel's bytes per step vs the textbook formula; TP2 vs FSDP2 step (CPU, fp32)",
              "hardware": f"{platform.machine()} CPU, {os.cpu_count()} cores, 1 thread per rank",
              "commit": commit.strip(), "config": {"seq": args.seq, "hidden": args.hidden, "layers": args.layers,
                                                   "heads": 8, "kv_heads": 2, "head_dim": 32, "vocab": 4096},
              "sent_bytes": got["sent"], "calls": got["calls"], "textbook_bytes": textbook,
              "gathers_and_scatters_over_textbook": big / textbook, "tokens_per_s_per_rank": got["rounds"],
              "tp2_over_fsdp2_range": [min(ratios), max(ratios)]}
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
