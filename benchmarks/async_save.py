"""How long a checkpoint save stops training: synchronous vs `training.save_async`, on the CPU.

    python benchmarks/async_save.py [--rounds 2] [--out FILE]

For the core's tiny LM and a ~500 MB one (fp32 weights; the checkpoint adds the AdamW moments, so
3x that is written), one process builds the model, takes one optimizer step so the moments exist,
then saves alternately both ways into fresh folders. The stall is the time `save()` holds the
training loop: the whole write when synchronous; when asynchronous, the copy to host memory and the
planning, plus the publish once the writes are done (manifest, rename; the files' checksums are
computed by the background thread).
`published` is when the asynchronous checkpoint is complete.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODELS = {
    "tiny": {"vocab_size": 1024, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2},
    "500MB": {"vocab_size": 4096, "hidden_size": 1024, "intermediate_size": 2816, "num_hidden_layers": 11},
}


def measure(rounds: int) -> dict:
    import torch
    from shardzoo.checkpoint.manager import Checkpointer, RunState
    from shardzoo.config import config_from_dict
    from shardzoo.parallel import build_meshes, init_distributed, shutdown_distributed
    from shardzoo.train.build import build_model
    from shardzoo.train.hf_config import resolve_model

    class Loader:
        def state_dict(self) -> dict:
            return {}

    init_distributed("cpu")
    results = {}
    for label, shape in MODELS.items():
        with tempfile.TemporaryDirectory() as tmp:
            cfg = config_from_dict({
                "model": {"model_id": "tiny_lm", "train_from_scratch": True,
                          "tokenizer_name_or_path": str(REPO / "data/tokenizer"),
                          "hf_config": {**shape, "num_attention_heads": 16 if shape["hidden_size"] > 64 else 4,
                                        "num_key_value_heads": 4 if shape["hidden_size"] > 64 else 2}},
                "data": {"dataset": "alpaca_sample"}, "parallel": {"param_dtype": "fp32"},
                "training": {"output_dir": tmp, "save_total_limit": 1, "save_checksums": True}})
            spec, hf_config = resolve_model(cfg)
            built = build_model(cfg, spec, hf_config, build_meshes("cpu", 1, 1, 1, 1), torch.device("cpu"))
            optimizer = torch.optim.AdamW(built.model.parameters(), lr=1e-4)
            for p in built.model.parameters():
                p.grad = torch.randn_like(p)
            optimizer.step()
            state = RunState(built.model, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0),
                             Loader(), "cpu", lambda path: path.mkdir(parents=True, exist_ok=True))
            checkpointer = Checkpointer(cfg, 0, 1)
            sync_s, async_stall_s, async_total_s = [], [], []
            step = 0
            for _ in range(rounds):
                step += 1
                start = time.perf_counter()
                checkpointer.save(step, state, 100)
                sync_s.append(time.perf_counter() - start)
                step += 1
                start = time.perf_counter()
                checkpointer.save(step, state, 100, background=True)
                stall = time.perf_counter() - start
                while not checkpointer.write_done():  # training would run here
                    time.sleep(0.01)
                publish = time.perf_counter()
                checkpointer.finish()  # the trainer's call once every rank's writes are done
                async_stall_s.append(stall + time.perf_counter() - publish)
                async_total_s.append(time.perf_counter() - start)
            size = sum(f.stat().st_size for f in (Path(tmp) / f"checkpoint-{step}").rglob("*") if f.is_file())
            params = sum(p.numel() * p.element_size() for p in built.model.parameters())
            results[label] = {"weights_bytes": params, "checkpoint_bytes": size, "sync_stall_s": sync_s,
                              "async_stall_s": async_stall_s, "async_published_s": async_total_s,
                              "stall_ratio_async_over_sync": [a / s for a, s in zip(async_stall_s, sync_s)]}
            del built, optimizer, state, checkpointer
    shutdown_distributed()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO).stdout
    return {"benchmark": "training stall of a checkpoint save, synchronous vs save_async (CPU, 1 process, fp32)",
            "hardware": f"{platform.machine()} CPU, {os.cpu_count()} cores", "commit": commit.strip(),
            "rounds": rounds, "models": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result = measure(args.rounds)
    mib = 2**20
    for label, r in result["models"].items():
        fmt = lambda xs: "-".join(f"{x:.2f}" for x in (min(xs), max(xs)))  # noqa: E731
        print(f"{label}: weights {r['weights_bytes'] / mib:.0f} MiB, checkpoint {r['checkpoint_bytes'] / mib:.0f} MiB; "
              f"stall sync {fmt(r['sync_stall_s'])} s, async {fmt(r['async_stall_s'])} s "
              f"(x{fmt(r['stall_ratio_async_over_sync'])}); async published after {fmt(r['async_published_s'])} s")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
