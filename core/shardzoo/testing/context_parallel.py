"""Context-parallel parity for any registered model package: the loss and every parameter gradient
of a batch split over cp gloo ranks (Ulysses) against the same batch in one process.

    ref = reference_loss_and_grads("qwen3", packed=True)                 # in the test process
    cp = context_parallel_loss_and_grads("qwen3", 2, packed=True, out_dir=tmp_path)   # torchrun, cp ranks
    assert_same_loss_and_grads(cp, ref)

Both build the package's tiny config (plus overrides) on the meta device, initialise it from one
seed, and feed the same rows through the real batch path (collate; on cp ranks also
split_sequence) and the CausalLMTask loss normalised by the global target count. The cp ranks'
gradients are summed, as FSDP's reduce-scatter does; FSDP itself is left out so the comparison
sees the Ulysses exchange alone. Rows have odd lengths (the batch is padded to a multiple of cp)
and, packed, several documents each.

The worker half runs as `python -m torch.distributed.run --nproc-per-node CP -m
shardzoo.testing.context_parallel MODEL_ID OUT_DIR [--packed] [--hf-config JSON]`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.distributed.tensor import DTensor

from ..data.context_split import split_sequence
from ..data.loader import Batch, collate
from ..data.rows import Row, packed_row, sample_row
from ..parallel import apply_context_parallel, build_meshes, init_distributed, shutdown_distributed
from ..parallel.materialize import init_parameters
from ..parallel.tensor import apply_tensor_parallel
from ..registry import load_spec
from ..train.hf_config import text_config
from ..train.task import CausalLMTask
from .dist import training_env

SEED = 1234
PAD_ID = 0
ROW_LENGTHS = (37, 50, 61)
"""Unpacked rows; packed rows are each three of these documents side by side."""


def tiny_model(model_id: str, hf_config: dict) -> nn.Module:
    spec = load_spec(model_id)
    config = spec.tiny_config(**hf_config)
    # Built on the CPU, not meta + to_empty: a plain module's to_empty unties shared weights.
    model = spec.build_model(config)
    init_parameters(model, SEED, spec.init_fn(config))
    return model


def sample_rows(vocab_size: int, packed: bool) -> list[Row]:
    """Random tokens with a trained suffix (like SFT: the prompt predicts nothing)."""
    rng = np.random.default_rng(SEED)

    def sample(n: int) -> Row:
        trained = np.arange(n) >= n // 3
        return sample_row(rng.integers(1, vocab_size, n), trained)

    if not packed:
        return [sample(n) for n in ROW_LENGTHS]
    return [packed_row([sample(n) for n in np.roll(ROW_LENGTHS, i)]) for i in range(2)]


def loss_and_grads(task: CausalLMTask, batch: Batch, normalizer: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    loss = task(batch.input_ids, batch.targets, normalizer=normalizer, position_ids=batch.position_ids,
                document_ids=batch.document_ids, token_mask=batch.token_mask)
    loss.backward()
    return loss.detach(), {n: p.grad for n, p in task.model.named_parameters() if p.grad is not None}


def reference_loss_and_grads(model_id: str, packed: bool, hf_config: dict | None = None):
    """The batch in this process, no context parallel (the process must not be in a process group)."""
    model = tiny_model(model_id, hf_config or {})
    batch = collate(sample_rows(text_config(model.config).vocab_size, packed), PAD_ID)
    return loss_and_grads(CausalLMTask(model, chunk_size=64), batch, float(batch.num_targets))


def context_parallel_loss_and_grads(model_id: str, cp_size: int, packed: bool, out_dir: str | Path,
                                    hf_config: dict | None = None, timeout: int = 300, tp_size: int = 1):
    """(summed loss, summed gradients) of cp_size gloo ranks splitting the batch, each cp rank's slice split
    further over tp_size tensor-parallel ranks (cp_size x tp_size processes)."""
    out_dir = Path(out_dir)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(cp_size * tp_size),
           "-m", "shardzoo.testing.context_parallel", model_id, str(out_dir),
           "--hf-config", json.dumps(hf_config or {}), "--tp", str(tp_size)]
    proc = subprocess.run(cmd + (["--packed"] if packed else []), capture_output=True, text=True, timeout=timeout,
                          env=training_env())
    if proc.returncode != 0:
        raise RuntimeError(f"context-parallel worker failed (exit {proc.returncode}): {' '.join(cmd)}\n"
                           f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    result = torch.load(out_dir / "context_parallel.pt")
    return result["loss"], result["grads"]


def assert_same_loss_and_grads(ours, ref, *, loss_rtol: float = 1e-6, grad_atol: float = 1e-5) -> None:
    """Loss within loss_rtol; every gradient within grad_atol x its largest reference entry (one
    scale per tensor: the gradients of a loss summed over ~100 tokens span orders of magnitude).

    Default tolerances are for fp32: both sides compute the same per-head attention, and differ in
    the order of sums only (the loss's per-rank partial sums, the sum of the ranks' gradients);
    measured on the tiny models: loss 1e-7 relative, gradients 1e-6 of their largest entry. A
    mistake in the exchange (a wrong head chunk of the sinks, documents cut at the slice edge) moves
    them by 1e-4 and 1e-1 or more.
    """
    loss, grads = ours
    ref_loss, ref_grads = ref
    torch.testing.assert_close(loss, ref_loss, rtol=loss_rtol, atol=0)
    assert sorted(grads) == sorted(ref_grads), "the same parameters must have gradients"
    for name, want in ref_grads.items():
        torch.testing.assert_close(grads[name], want, rtol=0, atol=grad_atol * float(want.abs().max()),
                                   msg=lambda m, name=name: f"grad of {name}: {m}")


def _worker(model_id: str, out_dir: Path, packed: bool, hf_config: dict, tp: int) -> None:
    rank, _, world = init_distributed("cpu")
    try:
        cp = world // tp
        model = tiny_model(model_id, hf_config)
        meshes = build_meshes("cpu", 1, world // tp, 1, 1, cp=cp, tp=tp)
        plan = load_spec(model_id).plan
        if tp > 1:
            apply_tensor_parallel(model, plan.tp, meshes.tp, kv_heads=text_config(model.config).num_key_value_heads)
        if cp > 1:
            apply_context_parallel(model, list(plan.cp_modules), meshes.cp)
        full = collate(sample_rows(text_config(model.config).vocab_size, packed), PAD_ID, pad_to_multiple_of=cp)
        # The tp ranks of a cp group (consecutive) share its slice.
        batch = split_sequence(full, rank // tp, cp) if cp > 1 else full
        loss, grads = loss_and_grads(CausalLMTask(model, chunk_size=64), batch, float(full.num_targets))
        # A tensor-parallel gradient in full (its partial sums added, its shards gathered) is the same on
        # every tp rank of a cp group, and so is the loss: the sum over all ranks counts them tp times.
        # Plain gradients (a block that runs on each rank's tokens, e.g. MoE under TP) are each rank's part.
        copies = {name: tp if isinstance(g, DTensor) else 1 for name, g in grads.items()}
        grads = {name: g.full_tensor() if isinstance(g, DTensor) else g for name, g in grads.items()}
        dist.all_reduce(loss, op=dist.ReduceOp.SUM)
        loss /= tp
        for name, tensor in grads.items():
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
            tensor /= copies[name]
        if rank == 0:
            torch.save({"loss": loss, "grads": grads}, out_dir / "context_parallel.pt")
    finally:
        shutdown_distributed()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_id")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--packed", action="store_true")
    parser.add_argument("--hf-config", default="{}", help="JSON overrides of the package's tiny config")
    parser.add_argument("--tp", type=int, default=1, help="tensor-parallel ranks (the rest split the sequence)")
    args = parser.parse_args(argv)
    _worker(args.model_id, args.out_dir, args.packed, json.loads(args.hf_config), args.tp)


if __name__ == "__main__":
    main()
