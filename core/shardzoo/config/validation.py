"""Checks on a typed Config: values and their combinations (validate_values, no files touched) and
the paths a run reads (validate_paths, before any model is built). World-size checks are the mesh's
(shardzoo.parallel.mesh)."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ConfigError
from .schema import Config, DataConfig, TrainingConfig


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


def validate_values(cfg: Config) -> None:
    """Checks on single values and their combinations that need no files and no world size."""
    m, d, p, t = cfg.model, cfg.data, cfg.parallel, cfg.training
    _require(m.model_name_or_path is not None or (m.model_id is not None and m.hf_config),
             "model.model_name_or_path: missing; give a directory with config.json, or model.model_id "
             "together with model.hf_config to build a model from an inline config")
    _require(m.model_name_or_path is not None or m.train_from_scratch,
             "model.train_from_scratch: an inline model.hf_config has no weights to load; set "
             "model.train_from_scratch: true or give model.model_name_or_path")
    _require(d.dataset is not None, "data.dataset: missing; name datasets from dataset_info.json "
             "(comma-separated) or give an inline {file_name, formatting, columns}")
    _require(d.cutoff_len >= 2, f"data.cutoff_len: {d.cutoff_len} is too small; use at least 2")
    _require(d.max_samples is None or d.max_samples > 0, "data.max_samples: must be positive or null")
    _validate_data(d, t)
    _require(m.freeze_modules is None or len(m.freeze_modules) > 0,
             "model.freeze_modules: must name at least one module pattern (e.g. model.vision_tower) or be null")
    _require(t.output_dir is not None, "training.output_dir: missing; set where metrics and checkpoints go")
    _require(t.per_device_train_batch_size >= 1, "training.per_device_train_batch_size: must be >= 1")
    _require(t.gradient_accumulation_steps >= 1, "training.gradient_accumulation_steps: must be >= 1")
    _require(t.lr > 0, f"training.lr: {t.lr} must be > 0")
    _require(0 <= t.min_lr <= t.lr, f"training.min_lr: {t.min_lr} must be between 0 and training.lr ({t.lr})")
    _require(0 <= t.warmup_ratio <= 1, f"training.warmup_ratio: {t.warmup_ratio} must be in [0, 1]")
    _require(t.weight_decay >= 0, "training.weight_decay: must be >= 0")
    _require(0 <= t.adam_beta1 < 1 and 0 <= t.adam_beta2 < 1, "training.adam_beta1/adam_beta2: must be in [0, 1)")
    _require(t.adam_epsilon > 0, "training.adam_epsilon: must be > 0")
    _require(t.max_grad_norm >= 0, "training.max_grad_norm: must be >= 0 (0 disables clipping)")
    _require(t.max_steps > 0 or (t.max_steps == -1 and t.num_train_epochs > 0),
             "training.max_steps: set a positive step count, or -1 with training.num_train_epochs > 0")
    _require(t.save_steps >= 0, f"training.save_steps: {t.save_steps} must be >= 0 (0 saves no checkpoints)")
    _require(t.save_total_limit is None or t.save_total_limit >= 1,
             f"training.save_total_limit: {t.save_total_limit} must be >= 1 or null (keep all)")
    _require(t.resume.strip() != "", "training.resume: empty; use auto, none or a checkpoint directory")
    _require(t.logging_steps >= 1, "training.logging_steps: must be >= 1")
    if t.profile_step_start != -1 or t.profile_step_end != -1:
        _require(1 <= t.profile_step_start <= t.profile_step_end, f"training.profile_step_start/profile_step_end: "
                 f"{t.profile_step_start}..{t.profile_step_end} is no range of steps; give 1 <= start <= end, or "
                 "-1 for both")
        _require(len(t.profile_ranks) > 0 and all(r >= -1 for r in t.profile_ranks),
                 f"training.profile_ranks: {t.profile_ranks} must list ranks (>= 0), or be [-1] for every rank")
    _require(t.loss_chunk_size >= 1, "training.loss_chunk_size: must be >= 1")
    _require(p.fsdp_size == "auto" or p.fsdp_size >= 1, f"parallel.fsdp_size: {p.fsdp_size} must be >= 1 or 'auto'")
    _require(p.fsdp_modules is None or len(p.fsdp_modules) > 0,
             "parallel.fsdp_modules: must name at least one module pattern "
             "(e.g. model.layers.{*})")
    _require(p.num_to_forward_prefetch >= 0 and p.num_to_backward_prefetch >= 0,
             "parallel.num_to_forward_prefetch/num_to_backward_prefetch: must be >= 0")
    _require(p.ep_size >= 1, f"parallel.ep_size: {p.ep_size} must be >= 1")
    _require(p.ep_fsdp_size == "auto" or p.ep_fsdp_size >= 1,
             f"parallel.ep_fsdp_size: {p.ep_fsdp_size} must be >= 1 or 'auto'")
    for key, example in (("ep_modules", "model.layers.{*}.mlp.experts"),
                         ("ep_fsdp_modules", "model.layers.{*}.mlp.experts"),
                         ("cp_modules", "model.layers.{*}.self_attn.core_attention")):
        value = getattr(p, key)
        _require(value is None or len(value) > 0, f"parallel.{key}: must name at least one module pattern "
                 f"(e.g. {example}) or be null")
    _require(p.cp_size >= 1, f"parallel.cp_size: {p.cp_size} must be >= 1")
    _require(p.ep_dispatcher == "eager" or p.ep_size > 1, f"parallel.ep_dispatcher={p.ep_dispatcher}: the dispatcher "
             "moves tokens between expert-parallel ranks, and parallel.ep_size is 1; set ep_size > 1 or remove "
             "ep_dispatcher")
    _require(p.tp_size >= 1, f"parallel.tp_size: {p.tp_size} must be >= 1")
    # An ignored module's gradient is summed by the trainer over every rank; under TP that sum depends on
    # what each parameter is (split, a partial on each rank, or a copy on each tp peer): not yet done.
    _require(p.tp_size == 1 or not p.ignored_modules, f"parallel.ignored_modules with parallel.tp_size={p.tp_size}: "
             "modules kept out of FSDP are not available together with tensor parallel in this version; remove "
             "ignored_modules or set tp_size: 1")
    for key in ("tp_colwise", "tp_rowwise"):
        _require(getattr(p, key) is None or len(getattr(p, key)) > 0, f"parallel.{key}: must name at least one "
                 "module pattern (e.g. '*.q_proj') or be null")


def _validate_eval(d: DataConfig, t: TrainingConfig) -> None:
    _require(not isinstance(d.val_size, bool) and d.val_size >= 0, f"data.val_size: {d.val_size} must be a fraction "
             "0 < f < 1, a row count >= 1, or 0 (none)")
    _require(not (isinstance(d.val_size, float) and d.val_size >= 1 and not d.val_size.is_integer()),
             f"data.val_size: {d.val_size} is neither a fraction below 1 nor a whole count")
    _require(not (d.val_size and d.eval_dataset is not None), "data.val_size and data.eval_dataset: both give "
             "evaluation rows; keep one")
    _require(not (d.val_size and d.streaming), "data.val_size: a streamed dataset has no rows to split off before "
             "training; give data.eval_dataset instead")
    _require(t.eval_steps >= 0, f"training.eval_steps: {t.eval_steps} must be >= 0")
    _require(t.eval_steps == 0 or d.eval_dataset is not None or d.val_size, f"training.eval_steps={t.eval_steps}: "
             "there is nothing to evaluate; set data.eval_dataset or data.val_size")
    _require(t.per_device_eval_batch_size is None or t.per_device_eval_batch_size >= 1,
             "training.per_device_eval_batch_size: must be >= 1 or null")


def _validate_data(d: DataConfig, t: TrainingConfig) -> None:
    _validate_eval(d, t)
    if d.interleave_probs is not None:
        _require(d.mix_strategy != "concat", "data.interleave_probs: only used by mix_strategy interleave_under or "
                 "interleave_over; set one of them or remove interleave_probs")
        _require(all(p >= 0 for p in d.interleave_probs) and abs(sum(d.interleave_probs) - 1) < 1e-6,
                 f"data.interleave_probs: {d.interleave_probs} must be non-negative and sum to 1")
    _require(d.buffer_size >= 1, "data.buffer_size: must be >= 1")
    _require(d.max_dynamic_patch >= 1, f"data.max_dynamic_patch: {d.max_dynamic_patch} must be >= 1")
    _require(d.preprocessing_num_workers is None or d.preprocessing_num_workers >= 1,
             "data.preprocessing_num_workers: must be >= 1 or null")
    _require(d.preprocessing_batch_size >= 1, "data.preprocessing_batch_size: must be >= 1")
    _require(d.dataloader_num_workers >= 0, "data.dataloader_num_workers: must be >= 0")
    if d.streaming:
        _require(t.max_steps > 0, "data.streaming: a streamed dataset has no length; set training.max_steps")
        _require(d.dataloader_num_workers == 0, "data.streaming: rows are read in the main process; set "
                 "data.dataloader_num_workers: 0 (or turn streaming off to use workers)")
    if d.is_pretraining:
        _require(not d.packing, "data.packing: mg pretraining data is already cut into cutoff_len sequences; "
                 "set data.packing: false")
        _require(not d.streaming, "data.streaming: mg pretraining data is tokenised once into shards on disk; "
                 "set data.streaming: false")
        _require(d.mix_strategy == "concat", "data.mix_strategy: mg pretraining data concatenates its sources; "
                 "set data.mix_strategy: concat")


def resolve_path(path: str) -> Path:
    return Path(os.path.expanduser(path)).resolve()


def validate_paths(cfg: Config, tokenizer: bool = True) -> None:
    """Checks that every path the run needs exists (called before the model is built); `tokenizer`:
    the task reads text through model.tokenizer_name_or_path (language models)."""
    m, t = cfg.model, cfg.training
    if t.resume not in ("auto", "none"):
        rdir = resolve_path(t.resume)
        _require(rdir.is_dir(), f"training.resume: {rdir} is not a directory; give a checkpoint directory "
                 "(e.g. <output_dir>/checkpoint-100), auto or none")
    if m.model_name_or_path is not None:
        mdir = resolve_path(m.model_name_or_path)
        _require(mdir.is_dir(), f"model.model_name_or_path: {mdir} is not a directory; point it at a "
                 "folder with config.json, or give a hub id (org/name)")
        _require((mdir / "config.json").is_file(), f"model.model_name_or_path: {mdir} has no config.json")
        if not m.train_from_scratch:
            has_weights = any(mdir.glob("*.safetensors")) or (mdir / "model.safetensors.index.json").is_file()
            _require(has_weights, f"model.model_name_or_path: {mdir} has no *.safetensors weights; add them or "
                     "set model.train_from_scratch: true")
    if tokenizer:
        validate_tokenizer_path(cfg)


def validate_tokenizer_path(cfg: Config) -> None:
    m = cfg.model
    tok = m.tokenizer_name_or_path or m.model_name_or_path
    _require(tok is not None, "model.tokenizer_name_or_path: missing; point it at a tokenizer folder "
             "(e.g. data/tokenizer)")
    tdir = resolve_path(tok)
    _require(tdir.is_dir() and ((tdir / "tokenizer.json").is_file() or (tdir / "tokenizer_config.json").is_file()),
             f"model.tokenizer_name_or_path: {tdir} has no tokenizer.json / tokenizer_config.json")

