"""Worker of test_context_parallel.py and test_tensor_parallel.py (run by torchrun, not collected by
pytest): the Wan DiT's output and gradients with this job's ranks split into tp tensor-parallel ranks
(innermost) x Ulysses CP over the rest, next to the same model in one piece."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from shardzoo.parallel import apply_context_parallel, build_meshes, init_distributed, shutdown_distributed
from shardzoo.parallel.tensor import apply_tensor_parallel
from shardzoo_wan import WanTransformer3DModel, tiny_config
from shardzoo_wan.spec import PLAN
from torch.distributed.tensor import DTensor


def output_and_grads(model, latents, t, text, probe):
    model.zero_grad()
    out = model(latents, t, text)
    (out * probe).sum().backward()
    return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def main(out_dir: Path, per_token: bool, tp: int = 1) -> None:
    rank, _, world = init_distributed("cpu")
    cp = world // tp
    try:
        torch.manual_seed(0)
        model = WanTransformer3DModel(tiny_config(num_attention_heads=4))  # 4 heads: cp 2 or 4
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn_like(p) * 0.2)
        gen = torch.Generator().manual_seed(1)
        latents, text = torch.randn(2, 4, 3, 8, 8, generator=gen), torch.randn(2, 8, 16, generator=gen)
        t = torch.rand(2, 48, generator=gen) * 1000 if per_token else torch.tensor([999.0, 137.0])
        probe = torch.randn(2, 4, 3, 8, 8, generator=gen)
        ref = output_and_grads(copy.deepcopy(model), latents, t, text, probe)
        meshes = build_meshes("cpu", 1, world // tp, 1, 1, cp=cp, tp=tp)
        if tp > 1:
            apply_tensor_parallel(model, PLAN.tp, meshes.tp)
        if cp > 1:
            apply_context_parallel(model, ["blocks.{*}.attn1.core_attention"], meshes.cp)
        out, grads = output_and_grads(model, latents, t, text, probe)
        for name, g in grads.items():
            # A tp-split gradient in full (its ranks' parts summed, its shards gathered) is the same on every
            # tp rank of a cp group, as is a plain one computed by every tp rank (the text embedding); each
            # cp rank holds its tokens' share, as FSDP's reduce-scatter would sum.
            g = g.full_tensor() if isinstance(g, DTensor) else g
            dist.all_reduce(g)
            grads[name] = g / tp
        if rank == 0:
            torch.save({"ref": ref, "cp": (out, grads)}, out_dir / "cp.pt")
    finally:
        shutdown_distributed()


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2] == "per-token", int(sys.argv[3]) if len(sys.argv) > 3 else 1)
