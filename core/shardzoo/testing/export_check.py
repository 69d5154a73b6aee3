"""`shardzoo export` of a checkpoint, run as a user runs it, and the folder checked for what every HF
export holds: sharded weights with their index, config (in the asked dtype), generation config,
tokenizer, and no head for a tied model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def export_checked(checkpoint: Path, out: Path, cwd: Path, max_shard_size: str, tied: bool = True) -> dict:
    """Export `checkpoint` to `out` in float32, sharded by `max_shard_size`; returns the index's weight_map."""
    proc = subprocess.run([sys.executable, "-m", "shardzoo", "export", str(checkpoint), "--format", "hf", str(out),
                           "--dtype", "float32", "--max-shard-size", max_shard_size], capture_output=True, text=True,
                          cwd=cwd, timeout=300)
    assert proc.returncode == 0, proc.stderr
    weight_map = json.loads((out / "model.safetensors.index.json").read_text())["weight_map"]
    shards = sorted(set(weight_map.values()))
    assert len(shards) > 1 and all((out / s).is_file() for s in shards)
    if tied:
        assert "lm_head.weight" not in weight_map  # tied to the embedding, as HF saves it
    for name in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"):
        assert (out / name).is_file(), name
    assert json.loads((out / "config.json").read_text())["dtype"] == "float32"
    return weight_map
