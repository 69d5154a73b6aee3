"""One rank of test_sharded_import.py: build the model from an HF checkpoint in a parallel layout
(lazy reads of each rank's rows), gather every parameter whole and compare it with the checkpoint
read eagerly through the same adapter.

    torchrun --nproc-per-node N import_worker.py CHECKPOINT OUT_JSON '{"ep_size": 2, ...}'
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
from shardzoo.checkpoint import iter_safetensors
from shardzoo.config import config_from_dict
from shardzoo.parallel import build_meshes, init_distributed, shutdown_distributed
from shardzoo.parallel.mesh_shape import mesh_shape
from shardzoo.train.build import build_model
from shardzoo.train.hf_config import resolve_model
from torch.distributed.tensor import DTensor

REPO = Path(__file__).resolve().parents[3]


def main(checkpoint: str, out: str, parallel: dict) -> None:
    cfg = config_from_dict({"model": {"model_name_or_path": checkpoint,
                                      "tokenizer_name_or_path": str(REPO / "data/tokenizer")},
                            "data": {"dataset": "alpaca_sample"}, "parallel": {"param_dtype": "fp32", **parallel},
                            "training": {"output_dir": tempfile.mkdtemp()}})
    rank, _, world = init_distributed("cpu")
    spec, hf_config = resolve_model(cfg)
    shape = mesh_shape(cfg.parallel, world)
    meshes = build_meshes("cpu", shape.replicate, shape.shard, shape.ep_fsdp, shape.ep, shape.cp, shape.tp)
    built = build_model(cfg, spec, hf_config, meshes, torch.device("cpu"))
    want = dict(spec.adapter.from_hf(iter_safetensors(checkpoint), hf_config))
    placements, differ = {}, []
    for name, param in built.model.named_parameters():
        whole = param.full_tensor() if isinstance(param, DTensor) else param
        placements[name] = str(param.placements) if isinstance(param, DTensor) else "plain"
        if not torch.equal(whole.detach(), want[name]):
            differ.append(name)
    results = [None] * world
    dist.all_gather_object(results, {"rank": rank, "differ": differ, "placements": placements})
    if rank == 0:
        Path(out).write_text(json.dumps(results))
    shutdown_distributed()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]))
