"""The training loop: config in, loss curve and metrics out.

Order of work, each step failing early and clearly: validate config and paths -> model config ->
the task's own checks -> device and process group -> mesh shape -> ops binding -> the task's data
(tokenizer and vocab check for language models) -> build, shard, materialise -> optimizer and
schedule -> steps. What a batch is and how it becomes a loss is the task's (train/task.py).

Loss normalisation: every micro-batch loss is its summed token CE divided by the number of
target tokens of the whole optimizer step across all micro-batches and ranks, and FSDP sums the
ranks' gradients; so any (world, batch, grad_accum) split of the same samples gives the same
update as one big batch. With training.loss_reduction square each target's CE is weighted by
1/sqrt(its sample's targets) and the denominator is the step's sum of weights, split-invariant too.
Other tasks follow the same rule with their own unit (Wan's flow matching: samples).
"""

from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
import torch.distributed as dist
import yaml
from tqdm import tqdm

from .. import device as devices
from ..checkpoint import StateDictAdapter
from ..checkpoint.export import export_hf
from ..checkpoint.hf_files import write_hf_files
from ..checkpoint.manager import Checkpointer, RunState
from ..checkpoint.run_lock import RunLock, check_output_dir
from ..config import Config, validate_paths
from ..errors import TrainingDiverged
from ..hub import resolve_hub_names
from ..ops import bind_ops
from ..ops.attention import fastest_sdpa
from ..parallel import build_meshes, gather_objects, init_distributed, shutdown_distributed, to_dtype
from ..parallel.mesh_shape import MeshShape, mesh_shape
from .build import build_model, check_tensor_parallel
from .evaluation import evaluate
from .grad_clip import clip_grad_norm_
from .hf_config import resolve_model
from .lr_schedule import build_scheduler
from .metrics import MetricsWriter, Throughput, gib
from .optimizer import build_optimizer
from .preemption import StopRequest
from .profiling import StepProfiler
from .task import task_class
from .trackers import chosen as chosen_trackers

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    losses: list[float] = field(default_factory=list)
    grad_norms: list[float] = field(default_factory=list)
    metrics_path: str = ""
    steps: int = 0
    """Optimizer steps done, counting those before a resume."""
    resumed_from: Optional[str] = None
    checkpoint: Optional[str] = None
    """The last checkpoint this run saved."""
    stopped_by: Optional[str] = None
    """The signal that stopped the run early (after saving), if any."""


def total_steps(cfg: Config, steps_per_epoch: int | None) -> int:
    """max_steps, or the epochs' worth of steps (a stream has no epoch length: config checks require max_steps)."""
    t = cfg.training
    if t.max_steps > 0:
        return t.max_steps
    assert steps_per_epoch is not None, "streaming without max_steps passed config validation"
    return max(1, math.ceil(t.num_train_epochs * steps_per_epoch))


def fsdp2_settings(p, built) -> str:
    """The FSDP2 settings in effect (defaults and the package's plan filled in), for the start log."""
    recompute = (f"{len(built.recomputed)} modules ({'reentrant' if p.use_reentrant else 'non-reentrant'})"
                 if built.recomputed else "off")
    offload = f"on (pin_memory {p.pin_memory})" if p.offload_to_cpu else "off"
    return (f"{len(built.fsdp_units)} units + root, param {p.param_dtype}, reduce {p.reduce_dtype}, output "
            f"{p.output_dtype or 'as computed'}, cast_forward_inputs {p.cast_forward_inputs}, reshard_after_forward "
            f"{p.reshard_after_forward}, prefetch forward {p.num_to_forward_prefetch} / backward "
            f"{p.num_to_backward_prefetch}, offload {offload}, "
            f"recompute {recompute}, ignored {', '.join(p.ignored_modules) or 'none'}, kept in fp32 "
            f"{len(built.kept_fp32)} modules/parameters")


def sum_replicated_grads(params: list[torch.nn.Parameter]) -> None:
    """Sum, over all ranks, the gradients of the parameters FSDP does not manage (ignored modules), as
    FSDP sums the others: the loss is already divided by the global count. One collective per step."""
    if not params or not dist.is_initialized() or dist.get_world_size() == 1:
        return
    grads = [q.grad if q.grad is not None else torch.zeros_like(q) for q in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    for q, g in zip(params, torch.split(flat, [g.numel() for g in grads])):
        q.grad = g.view_as(q).clone()


def _log_eval(step: int, built, loader, device, tp: int, writer: MetricsWriter) -> int:
    record = {"step": step, **evaluate(built.task, loader, device, tp)}
    writer.write(record)
    writer.console(record)
    return step


def _all_reduce_sum(value: torch.Tensor) -> torch.Tensor:
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


def train(cfg: Config) -> TrainResult:
    # Everything checkable from the config alone fails here, before any process group exists.
    resolve_hub_names(cfg.model)
    validate_paths(cfg, tokenizer=False)
    device_type = devices.resolve_device_type(cfg.training.device)
    shape = mesh_shape(cfg.parallel, devices.rank_info()[2])
    spec, hf_config = resolve_model(cfg)
    if shape.tp > 1:
        check_tensor_parallel(spec, hf_config, shape.tp)
    task_class(spec).check_config(cfg, spec, hf_config)
    trackers = chosen_trackers(cfg.training.report_to)
    output_dir = Path(cfg.training.output_dir)
    check_output_dir(output_dir)
    # One run per output_dir, decided before anything is built: a second run stops within seconds.
    lock = RunLock(output_dir) if devices.rank_info()[0] == 0 else None
    if lock is not None:
        lock.acquire()
    owns_group = not dist.is_initialized()
    try:
        rank, local_rank, world = init_distributed(device_type, cpu_tensors=cfg.parallel.offload_to_cpu)
        try:
            assert world == shape.world, "the launcher's WORLD_SIZE is the process group's size"
            result = _train(cfg, spec, hf_config, device_type, rank, local_rank, shape, trackers)
        except BaseException:
            # A rank that failed alone must not wait in a barrier its peers never reach: with peers the
            # launcher tears the job down; a lone process just drops its group.
            if owns_group and world == 1:
                dist.destroy_process_group()
            raise
    finally:
        if lock is not None:
            lock.release()
    if owns_group:
        shutdown_distributed()
    return result


def _train(cfg: Config, spec, hf_config, device_type: str, rank: int, local_rank: int,
           shape: MeshShape, trackers: list[str]) -> TrainResult:
    t = cfg.training
    world, cp, tp = shape.world, shape.cp, shape.tp
    device = devices.local_device(device_type, local_rank)
    bound_ops = bind_ops(vars(cfg.ops), device_type)
    torch.manual_seed(t.seed)
    checkpointer = Checkpointer(cfg, rank, world)
    resume_from = checkpointer.resume_path()

    data_start = time.perf_counter()
    # The cp ranks of a group read the same rows, each its slice of the sequence; the tp ranks (consecutive,
    # the innermost axis) of a cp rank share its batch.
    train_data = task_class(spec).build_data(cfg, spec, hf_config, rank=rank // (cp * tp), world=shape.dp,
                                             local_rank=local_rank, barrier=dist.barrier,
                                             cp_rank=(rank // tp) % cp, cp_size=cp)
    data_seconds = time.perf_counter() - data_start
    loader = train_data.loader
    if rank == 0:
        # Skipped or truncated samples change what the model learns: say so louder than info.
        level = logging.WARNING if train_data.skipped() else logging.INFO
        log.log(level, "data: %s; ready in %.1fs", train_data.describe(), data_seconds)
    steps = total_steps(cfg, getattr(loader, "steps_per_epoch", None))

    meshes = build_meshes(device_type, shape.replicate, shape.shard, shape.ep_fsdp, shape.ep, cp, tp)
    # What the process held before the model existed (CPU: the runtime, tokenizer and data; accelerators:
    # ~0), so a run's peak can be set against `shardzoo plan`, which counts only the training state.
    memory_before_model = devices.memory_in_use_bytes(device_type)
    built = build_model(cfg, spec, hf_config, meshes, device)
    optimizer = build_optimizer(built.task, t)
    scheduler = build_scheduler(optimizer, lr=t.lr, min_lr=t.min_lr, warmup_ratio=t.warmup_ratio,
                                total_steps=steps, kind=t.lr_scheduler_type)

    is_main = rank == 0
    out_dir = Path(t.output_dir)
    writer = MetricsWriter(str(out_dir), enabled=is_main, trackers=trackers, run_config=cfg.to_dict())
    if is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    peak, peak_source = devices.peak_flops(device_type, to_dtype(cfg.parallel.param_dtype))
    writer.console({"model": type(built.model).__name__, "path": "package " + spec.name if spec else "AutoModel",
                    "params": sum(p.numel() for p in built.model.parameters()), "device": device_type,
                    "world": world, "mesh": shape.describe(),
                    **({"tp_projections": len(built.tensor_parallel)} if built.tensor_parallel else {}),
                    "fsdp_units": len(built.fsdp_units),
                    "recomputed": len(built.recomputed), "compiled": len(built.compiled), "frozen": len(built.frozen),
                    **({"package_steps": ", ".join(built.customised)} if built.customised else {}),
                    "rows": train_data.rows or "stream", "steps": steps,
                    **({"eval_rows": train_data.eval_rows} if getattr(train_data, "eval_loader", None) else {}),
                    "ops": ",".join(f"{k}={v}" for k, v in bound_ops.items()), "peak_flops": peak_source})

    if is_main:
        log.info("fsdp2: %s", fsdp2_settings(cfg.parallel, built))
    run_state = RunState(built.model, optimizer, scheduler, loader, device_type,
                write_hf_files=lambda d: write_hf_files(d, hf_config, train_data.tokenizer,
                                                        cfg.model.model_name_or_path,
                                                        spec.architectures if spec else ()))
    result = TrainResult(metrics_path=str(writer.path))
    start_step = 0
    if resume_from is not None:
        # The load's own peak (the optimizer state is created, then read into), for `shardzoo plan`'s resume row.
        devices.reset_peak_memory(device_type)
        start_step = checkpointer.load(resume_from, run_state, steps)
        checkpointer.start_timeline(resume_from, start_step)
        result.resumed_from, result.steps = str(resume_from), start_step
        writer.write({"step": start_step, "resumed_from": str(resume_from),
                      "resume_peak_memory_gib": gib(devices.peak_memory_bytes(device_type)),
                      "memory_before_model_gib": gib(memory_before_model)})
    elif rank == 0 and t.resume == "auto":
        log.info("no checkpoint in %s: starting from step 0", out_dir)
    throughput = Throughput(world, peak)
    profiler = StepProfiler(t, device_type, rank, out_dir)
    devices.reset_peak_memory(device_type)
    # A bar that redraws garbles a log file: only on a terminal.
    bar = tqdm(total=steps, initial=start_step, disable=not (is_main and t.progress_bar and sys.stderr.isatty()),
               desc="train", dynamic_ncols=True)
    data = iter(loader)
    data_wait = 0.0
    params = [p for p in built.task.parameters() if p.requires_grad]
    saving = t.save_steps > 0 or t.export_hf_at_end
    eval_loader, last_eval = getattr(train_data, "eval_loader", None), None
    evaluating = eval_loader is not None
    try:
        with StopRequest() as stop, fastest_sdpa(device_type):
            for step in range(start_step, steps):
                with profiler.step(step + 1):
                    wait_start = time.perf_counter()
                    micro_batches = [b.to(device) for b in next(data)]
                    data_wait += time.perf_counter() - wait_start
                    # Stays on the device: the loss divides by it without a host sync. The tp ranks of a
                    # group hold the same batch: counted once.
                    normalizer = _all_reduce_sum(torch.tensor(sum(b.loss_normalizer for b in micro_batches),
                                                              device=device)) / tp
                    loss_sum = torch.zeros((), device=device)
                    for i, batch in enumerate(micro_batches):
                        # Reduce-scatter gradients once per step, on the last micro-batch.
                        built.task.set_requires_gradient_sync(i == len(micro_batches) - 1)
                        loss = built.task(**batch.inputs(), normalizer=normalizer, micro_batches=len(micro_batches))
                        loss.backward()
                        loss_sum += built.task.logged_loss(loss)
                        # Attention FLOPs grow with the whole row (cp slices of it under context parallel).
                        tokens = batch.num_tokens / tp  # each tp rank does 1/tp of the group's work
                        throughput.add(tokens, tokens * built.flops_per_token(batch.attention_length))
                    # The stop flag, and whether a background save is still writing, ride on the loss
                    # all-reduce: every rank stops, or publishes the save, after the same step.
                    step_loss, stop_votes, writing = _all_reduce_sum(torch.stack(
                        [loss_sum, torch.tensor(stop.flag, device=device),
                         torch.tensor(0.0 if checkpointer.write_done() else 1.0, device=device)])).tolist()
                    sum_replicated_grads(built.replicated)
                    grad_norm = clip_grad_norm_(params, t.max_grad_norm).item()
                    if not (math.isfinite(step_loss) and math.isfinite(grad_norm)):
                        raise TrainingDiverged(
                            f"step {step + 1}: loss {step_loss} / grad_norm {grad_norm} is not finite; the weights "
                            f"were not updated. Lower training.lr (now {t.lr}), add warmup, check the data, or use "
                            "fp32/bf16 instead of fp16.")
                    lr = scheduler.get_last_lr()[0]
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                    built.task.end_step()
                    result.losses.append(step_loss)
                    result.grad_norms.append(grad_norm)
                    result.steps = step + 1
                    bar.update(1)
                    bar.set_postfix(loss=f"{step_loss:.4f}", lr=f"{lr:.2e}")
                    if (step + 1) % t.logging_steps == 0 or step + 1 == steps:
                        devices.synchronize(device_type)
                        window = throughput.report(lambda t: _all_reduce_sum(t.to(device)).cpu())
                        record = {"step": step + 1, "loss": step_loss, "lr": lr, "grad_norm": grad_norm, **window,
                                  "data_wait_s": data_wait, "data_wait_pct": 100 * data_wait / window["elapsed_s"],
                                  "peak_memory_gib": gib(devices.peak_memory_bytes(device_type)),
                                  "memory_before_model_gib": gib(memory_before_model),
                                  **built.task.step_metrics()}
                        data_wait = 0.0
                        writer.write(record)
                        writer.console(record)
                    if evaluating and t.eval_steps > 0 and (step + 1) % t.eval_steps == 0:
                        last_eval = _log_eval(step + 1, built, eval_loader, device, tp, writer)
                    if checkpointer.in_flight is not None and writing == 0:
                        checkpointer.finish()
                    if t.save_steps > 0 and (step + 1) % t.save_steps == 0:
                        result.checkpoint = str(checkpointer.save(step + 1, run_state, steps, t.save_async))
                    if stop_votes > 0:
                        result.stopped_by = stop.received or "a signal on another rank"
                        break
                profiler.after(step + 1)
        if evaluating and not result.stopped_by and result.steps > 0 and last_eval != result.steps:
            _log_eval(result.steps, built, eval_loader, device, tp, writer)
    finally:
        bar.close()
        profiler.close(result.steps)
    try:
        if (saving or result.stopped_by) and result.steps > 0:
            result.checkpoint = str(checkpointer.save(result.steps, run_state, steps))
        if result.stopped_by:
            if is_main:
                log.warning("stopped by %s after step %d of %d; saved %s. Run the same command again "
                            "(training.resume: auto) to continue", result.stopped_by, result.steps, steps,
                            result.checkpoint)
        elif t.export_hf_at_end:
            export_dir = out_dir / "hf"
            export_hf(Path(result.checkpoint), export_dir, adapter=spec.adapter if spec else StateDictAdapter(),
                      hf_config=hf_config, dtype=t.export_dtype, rank=rank, world=world, overwrite=True,
                      gather=gather_objects, run_dir=out_dir)
            if is_main:
                log.info("exported the final model to %s", export_dir)
    finally:
        writer.close()
    if is_main and train_data.rows is None:
        log.info("data (streamed so far): %s", train_data.describe())
    if is_main and result.checkpoint is None:
        log.warning("no checkpoint written (training.save_steps is 0); metrics are in %s", writer.path)
    return result

