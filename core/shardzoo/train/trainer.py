"""The training loop: config in, loss curve and metrics out.

Order of work, each step failing early and clearly: validate config and paths -> device and
process group -> mesh shape -> ops binding -> tokenizer and data -> model config and vocab check
-> build, shard, materialise -> optimizer and schedule -> steps.

Loss normalisation: every micro-batch loss is its summed token CE divided by the number of
target tokens of the whole optimizer step across all micro-batches and ranks, and FSDP sums the
ranks' gradients; so any (world, batch, grad_accum) split of the same samples gives the same
update as one big batch.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
import yaml
from tqdm import tqdm

from .. import device as devices
from ..config import Config, mesh_shape, validate_paths
from ..data import StepBatches, build_sft_samples, load_tokenizer
from ..ops import bind_ops
from ..parallel import build_data_parallel_mesh, init_distributed, to_dtype
from .build import build_model, check_vocab, resolve_model
from .grad_clip import clip_grad_norm_
from .lr_schedule import build_scheduler
from .metrics import MetricsWriter, Throughput, gib
from .optimizer import build_optimizer

log = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """The loss or gradient norm became NaN or infinite."""


@dataclass
class TrainResult:
    losses: list[float] = field(default_factory=list)
    grad_norms: list[float] = field(default_factory=list)
    metrics_path: str = ""
    steps: int = 0


def total_steps(cfg: Config, steps_per_epoch: int) -> int:
    t = cfg.training
    if t.max_steps > 0:
        return t.max_steps
    return max(1, math.ceil(t.num_train_epochs * steps_per_epoch))


def _all_reduce_sum(value: torch.Tensor) -> torch.Tensor:
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


def train(cfg: Config) -> TrainResult:
    # Everything checkable from the config alone fails here, before any process group exists.
    validate_paths(cfg)
    device_type = devices.resolve_device_type(cfg.training.device)
    mesh_shape(cfg, devices.rank_info()[2])
    spec, hf_config = resolve_model(cfg)
    owns_group = not dist.is_initialized()
    rank, local_rank, world = init_distributed(device_type)
    try:
        return _train(cfg, spec, hf_config, device_type, rank, local_rank, world)
    finally:
        if owns_group and dist.is_initialized():
            dist.destroy_process_group()


def _train(cfg: Config, spec, hf_config, device_type: str, rank: int, local_rank: int, world: int) -> TrainResult:
    t = cfg.training
    replicate, shard = mesh_shape(cfg, world)
    device = devices.local_device(device_type, local_rank)
    bound_ops = bind_ops({k: v for k, v in vars(cfg.ops).items() if k != "loss_chunk_size"}, device_type)
    torch.manual_seed(t.seed)

    tok_path = cfg.model.tokenizer_name_or_path or cfg.model.model_name_or_path
    tokenizer = load_tokenizer(tok_path, cfg.model.trust_remote_code)
    samples = build_sft_samples(cfg.data, tokenizer)
    check_vocab(hf_config, tokenizer, tok_path)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    batches = StepBatches(samples, rank=rank, world=world, batch_size=t.per_device_train_batch_size,
                          grad_accum=t.gradient_accumulation_steps, seed=t.seed,
                          shuffle=not cfg.data.disable_shuffling, pad_id=pad_id)
    steps = total_steps(cfg, batches.steps_per_epoch)

    mesh = build_data_parallel_mesh(device_type, replicate, shard)
    built = build_model(cfg, spec, hf_config, mesh, device)
    optimizer = build_optimizer(built.task, t)
    scheduler = build_scheduler(optimizer, lr=t.lr, min_lr=t.min_lr, warmup_ratio=t.warmup_ratio,
                                total_steps=steps, kind=t.lr_scheduler_type)

    is_main = rank == 0
    out_dir = Path(t.output_dir)
    writer = MetricsWriter(str(out_dir), enabled=is_main)
    if is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    peak, peak_source = devices.peak_flops(device_type, to_dtype(cfg.parallel.param_dtype))
    writer.console({"model": type(built.model).__name__, "path": "package " + spec.name if spec else "AutoModel",
                    "params": sum(p.numel() for p in built.model.parameters()), "device": device_type,
                    "world": world, "mesh": f"{replicate}x{shard}", "fsdp_units": len(built.fsdp_units),
                    "recomputed": len(built.recomputed), "samples": len(samples), "steps": steps,
                    "ops": ",".join(f"{k}={v}" for k, v in bound_ops.items()), "peak_flops": peak_source})

    result = TrainResult(metrics_path=str(writer.path))
    throughput = Throughput(world, peak)
    devices.reset_peak_memory(device_type)
    bar = tqdm(total=steps, disable=not (is_main and t.progress_bar), desc="train", dynamic_ncols=True)
    data = iter(batches)
    params = [p for p in built.task.parameters() if p.requires_grad]
    try:
        for step in range(steps):
            micro_batches = [b.to(device) for b in next(data)]
            # Stays on the device: the loss divides by it without a host sync.
            normalizer = _all_reduce_sum(torch.tensor(float(sum(b.num_targets for b in micro_batches)),
                                                      device=device))
            loss_sum = torch.zeros((), device=device)
            for i, batch in enumerate(micro_batches):
                # Reduce-scatter gradients once per step, on the last micro-batch.
                built.task.set_requires_gradient_sync(i == len(micro_batches) - 1)
                loss = built.task(batch.input_ids, batch.targets, normalizer=normalizer)
                loss.backward()
                loss_sum += loss.detach().float()
                throughput.add(batch.num_tokens,
                               batch.num_tokens * built.flops_per_token(batch.input_ids.shape[1]))
            step_loss = _all_reduce_sum(loss_sum).item()
            grad_norm = clip_grad_norm_(params, t.max_grad_norm).item()
            if not (math.isfinite(step_loss) and math.isfinite(grad_norm)):
                raise TrainingDiverged(
                    f"step {step + 1}: loss {step_loss} / grad_norm {grad_norm} is not finite; the weights were not "
                    f"updated. Lower training.lr (now {t.lr}), add warmup, check the data, or use fp32/bf16 "
                    "instead of fp16.")
            lr = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            result.losses.append(step_loss)
            result.grad_norms.append(grad_norm)
            result.steps = step + 1
            bar.update(1)
            bar.set_postfix(loss=f"{step_loss:.4f}", lr=f"{lr:.2e}")
            if (step + 1) % t.logging_steps == 0 or step + 1 == steps:
                devices.synchronize(device_type)
                record = {"step": step + 1, "loss": step_loss, "lr": lr, "grad_norm": grad_norm,
                          **throughput.report(), "peak_memory_gib": gib(devices.peak_memory_bytes(device_type))}
                writer.write(record)
                writer.console(record)
    finally:
        bar.close()
        writer.close()
    if is_main:
        log.warning("no checkpoint written: checkpoint saving is not available in this version "
                    "(metrics are in %s)", writer.path)
    return result
