"""Peak resident memory per rank while an HF checkpoint loads into the meta-built, FSDP2-sharded Qwen3.

    python benchmarks/import_memory.py [--nproc 2] [--layers 12] [--hidden 1024] [--out FILE]

Writes a random HF Qwen3 checkpoint (fp32, sharded safetensors), then on N CPU ranks builds the
model from it the way training does and prints each rank's peak RSS growth during the build
and the bytes it read (the kernel's count of read() bytes, /proc/self/io rchar) next to the
checkpoint size. A rank holding or reading the full model would show at least 1.0x the model; the
loader should need its shard (1/N) plus about one full tensor, and read about 1/N.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def make_checkpoint(path: Path, layers: int, hidden: int) -> int:
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(vocab_size=4096, hidden_size=hidden, intermediate_size=hidden * 11 // 4,
                         num_hidden_layers=layers, num_attention_heads=16, num_key_value_heads=8,
                         head_dim=hidden // 16, tie_word_embeddings=False, max_position_embeddings=512)
    with torch.device("meta"):
        model = Qwen3ForCausalLM(config)
    model.to_empty(device="cpu")
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02)
    model.save_pretrained(path, max_shard_size="50MB")
    return sum(p.numel() * p.element_size() for p in model.parameters())


def bytes_read() -> int:
    """Bytes this process has passed through read() so far (page-cache hits included)."""
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("rchar:"))


def worker(checkpoint: str, out: str) -> None:
    import torch
    import torch.distributed as dist
    from shardzoo.config import config_from_dict
    from shardzoo.device import process_memory_bytes, reset_peak_memory
    from shardzoo.parallel import build_meshes, init_distributed, shutdown_distributed
    from shardzoo.train.build import build_model
    from shardzoo.train.hf_config import resolve_model

    cfg = config_from_dict({"model": {"model_name_or_path": checkpoint,
                                      "tokenizer_name_or_path": str(REPO / "data/tokenizer")},
                            "data": {"dataset": "alpaca_sample"}, "parallel": {"param_dtype": "fp32"},
                            "training": {"output_dir": tempfile.mkdtemp()}})
    rank, _, world = init_distributed("cpu")
    spec, hf_config = resolve_model(cfg)
    meshes = build_meshes("cpu", 1, world, 1, 1)
    dist.barrier()
    before = process_memory_bytes("VmRSS")
    reset_peak_memory("cpu")
    read_before = bytes_read()
    built = build_model(cfg, spec, hf_config, meshes, torch.device("cpu"))
    read = bytes_read() - read_before
    peak = process_memory_bytes("VmHWM") - before
    local = sum(p.to_local().numel() * p.element_size() for p in built.model.parameters())
    results = [None] * world
    dist.all_gather_object(results, {"rank": rank, "peak_rss_growth_bytes": peak, "local_shard_bytes": local,
                                      "bytes_read": read})
    if rank == 0:
        Path(out).write_text(json.dumps(results))
    del built
    shutdown_distributed()


def measure(nproc: int, layers: int, hidden: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        ckpt, out = Path(tmp) / "ckpt", Path(tmp) / "ranks.json"
        model_bytes = make_checkpoint(ckpt, layers, hidden)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
               __file__, "--worker", str(ckpt), str(out)]
        proc = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"the ranks failed (exit {proc.returncode}):\n{proc.stderr[-6000:]}")
        ranks = json.loads(out.read_text())
    largest = 4096 * hidden * 4
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO).stdout
    return {"benchmark": "peak RSS per rank while an HF Qwen3 checkpoint loads into meta + FSDP2 (CPU, fp32)",
            "hardware": f"{platform.machine()} CPU, {os.cpu_count()} cores", "commit": commit.strip(),
            "config": {"layers": layers, "hidden": hidden, "vocab": 4096}, "model_bytes": model_bytes,
            "largest_tensor_bytes": largest, "world": nproc, "ranks": ranks,
            "max_peak_over_model": max(r["peak_rss_growth_bytes"] for r in ranks) / model_bytes,
            "max_read_over_model": max(r["bytes_read"] for r in ranks) / model_bytes}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result = measure(args.nproc, args.layers, args.hidden)
    mib = 2**20
    print(f"model {result['model_bytes'] / mib:.0f} MiB fp32, largest tensor {result['largest_tensor_bytes'] / mib:.0f}"
          f" MiB, {args.nproc} CPU ranks")
    for r in result["ranks"]:
        print(f"  rank {r['rank']}: peak RSS growth {r['peak_rss_growth_bytes'] / mib:.0f} MiB "
              f"({r['peak_rss_growth_bytes'] / result['model_bytes']:.2f}x model), its shard "
              f"{r['local_shard_bytes'] / mib:.0f} MiB, read {r['bytes_read'] / mib:.0f} MiB "
              f"({r['bytes_read'] / result['model_bytes']:.2f}x model)")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
