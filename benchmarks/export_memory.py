"""Peak resident memory per rank while `shardzoo export` writes a checkpoint as an HF folder.

    python benchmarks/export_memory.py [--nproc 2] [--layers 12] [--hidden 1024] [--max-shard-size 50MB] [--out FILE]

Saves a checkpoint of a random Qwen3 (fp32, the 572 MiB model of import_memory.py by default), then
exports it on N CPU ranks and prints each rank's peak RSS growth during the export next to the model
size, the largest output file and the largest tensor. The exporter streams tensor by tensor, so a
rank should grow by about one tensor (plus the checkpoint reader's buffers), far below one file.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _import_memory():
    spec = importlib.util.spec_from_file_location("import_memory", Path(__file__).with_name("import_memory.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def save_worker(hf_dir: str, run_dir: str) -> None:
    """One process: build the model from `hf_dir` and save it as a training checkpoint."""
    import torch
    from shardzoo.checkpoint.hf_files import write_hf_files
    from shardzoo.checkpoint.manager import Checkpointer, RunState
    from shardzoo.config import config_from_dict
    from shardzoo.parallel import build_meshes, init_distributed, shutdown_distributed
    from shardzoo.train.build import build_model
    from shardzoo.train.hf_config import resolve_model

    cfg = config_from_dict({"model": {"model_name_or_path": hf_dir,
                                      "tokenizer_name_or_path": str(REPO / "data/tokenizer")},
                            "data": {"dataset": "alpaca_sample"}, "parallel": {"param_dtype": "fp32"},
                            "training": {"output_dir": run_dir}})
    init_distributed("cpu")
    spec, hf_config = resolve_model(cfg)
    built = build_model(cfg, spec, hf_config, build_meshes("cpu", 1, 1, 1, 1), torch.device("cpu"))
    optimizer = torch.optim.SGD(built.model.parameters(), lr=0.0)  # no optimizer state: the export reads none

    class Loader:
        def state_dict(self) -> dict:
            return {}

    state = RunState(built.model, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0), Loader(),
                     "cpu", lambda path: write_hf_files(path, hf_config, None, hf_dir, spec.architectures))
    Checkpointer(cfg, 0, 1).save(1, state, 1)
    shutdown_distributed()


def export_worker(checkpoint: str, out_dir: str, max_shard: int, result: str) -> None:
    import torch.distributed as dist
    from shardzoo.checkpoint.export import export_hf
    from shardzoo.device import process_memory_bytes, reset_peak_memory
    from shardzoo.parallel import gather_objects, init_distributed, shutdown_distributed
    from shardzoo.train.hf_config import checkpoint_model

    rank, _, world = init_distributed("cpu")
    adapter, hf_config = checkpoint_model(Path(checkpoint))
    dist.barrier()
    before = process_memory_bytes("VmRSS")
    reset_peak_memory("cpu")
    export_hf(Path(checkpoint), Path(out_dir), adapter=adapter, hf_config=hf_config, max_shard_bytes=max_shard,
              rank=rank, world=world, gather=gather_objects)
    peak = process_memory_bytes("VmHWM") - before
    ranks = gather_objects({"rank": rank, "peak_rss_growth_bytes": peak})
    if rank == 0:
        Path(result).write_text(json.dumps(ranks))
    shutdown_distributed()


def _run(args: list[str]) -> None:
    proc = subprocess.run(args, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:6])} ... failed (exit {proc.returncode}):\n{proc.stderr[-6000:]}")


def measure(nproc: int, layers: int, hidden: int, max_shard: int) -> dict:
    from shardzoo.checkpoint.hf_weights import read_header

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_bytes = _import_memory().make_checkpoint(tmp / "hf_in", layers, hidden)
        _run([sys.executable, __file__, "--save-worker", str(tmp / "hf_in"), str(tmp / "run")])
        _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc), __file__,
              "--export-worker", str(tmp / "run" / "checkpoint-1"), str(tmp / "hf_out"), str(max_shard),
              str(tmp / "ranks.json")])
        ranks = json.loads((tmp / "ranks.json").read_text())
        files = sorted((tmp / "hf_out").glob("*.safetensors"))
        largest_file = max(f.stat().st_size for f in files)
        largest_tensor = max(end - begin for f in files
                             for begin, end in (i["data_offsets"] for i in read_header(f)[0].values()))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO).stdout
    return {"benchmark": "peak RSS per rank while shardzoo export writes a Qwen3 checkpoint as HF safetensors (CPU)",
            "hardware": f"{platform.machine()} CPU, {os.cpu_count()} cores", "commit": commit.strip(),
            "config": {"layers": layers, "hidden": hidden, "vocab": 4096, "max_shard_bytes": max_shard},
            "model_bytes": model_bytes, "files": len(files), "largest_file_bytes": largest_file,
            "largest_tensor_bytes": largest_tensor, "world": nproc, "ranks": ranks,
            "max_peak_over_model": max(r["peak_rss_growth_bytes"] for r in ranks) / model_bytes,
            "max_peak_over_largest_file": max(r["peak_rss_growth_bytes"] for r in ranks) / largest_file}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--save-worker":
        save_worker(*sys.argv[2:4])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--export-worker":
        export_worker(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
        return
    from shardzoo.cli import parse_size

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--max-shard-size", type=parse_size, default=parse_size("50MB"))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result = measure(args.nproc, args.layers, args.hidden, args.max_shard_size)
    mib = 2**20
    print(f"model {result['model_bytes'] / mib:.0f} MiB fp32 -> {result['files']} files, largest "
          f"{result['largest_file_bytes'] / mib:.0f} MiB, largest tensor "
          f"{result['largest_tensor_bytes'] / mib:.0f} MiB, "
          f"{args.nproc} CPU ranks")
    for r in result["ranks"]:
        growth = r["peak_rss_growth_bytes"]
        print(f"  rank {r['rank']}: peak RSS growth {growth / mib:.0f} MiB ({growth / result['model_bytes']:.2f}x "
              f"model, {growth / result['largest_file_bytes']:.2f}x the largest file)")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
