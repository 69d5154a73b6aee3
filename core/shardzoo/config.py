"""Typed YAML schema: sections model / data / parallel / training / ops, and `task`.

Field names follow the MindSpeed-LLM FSDP2 configs; the MindSpeed-MM `fsdp2_config.yaml` keys are
accepted unchanged, inline in `parallel` or in a separate file named by `parallel.fsdp2_config`.
Every problem a user can cause (unknown key, wrong type, impossible mesh, missing path) raises
ConfigError naming the key and the fix, before any model is built.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml

from .device import DEVICE_TYPES


class ConfigError(ValueError):
    """A user-fixable problem in a config file or override."""


DtypeName = Literal["fp32", "float32", "bf16", "bfloat16", "fp16", "float16"]
OP_BACKEND_AUTO = "auto"


@dataclass
class ModelConfig:
    model_id: Optional[str] = None
    """Registered model package to use (e.g. qwen3); empty = registry lookup, then AutoModel."""
    model_name_or_path: Optional[str] = None
    """Directory with config.json (+ safetensors unless train_from_scratch)."""
    tokenizer_name_or_path: Optional[str] = None
    trust_remote_code: bool = False
    train_from_scratch: bool = False
    hf_config: dict = field(default_factory=dict)
    """HF config fields applied on top of config.json (or the whole config when there is no path)."""
    freeze_modules: Optional[list[str]] = None
    """Module patterns whose parameters are not trained (kept, not updated, not in the optimizer), e.g.
    InternVL's model.vision_tower / model.multi_modal_projector / model.language_model."""


@dataclass
class DataConfig:
    """Field names follow MindSpeed-LLM FSDP2 / LLaMA-Factory DataArguments."""

    dataset: Union[str, dict, None] = None
    """Comma-separated names from dataset_info.json, or an inline {file_name, formatting, columns}.
    With data_manager_type mg a name may also be a file or folder path of raw text."""
    dataset_dir: str = "data"
    """Folder holding dataset_info.json; relative file names in it resolve against this folder."""
    mix_strategy: Literal["concat", "interleave_under", "interleave_over"] = "concat"
    """How several datasets combine: one after another, or interleaved with interleave_probs until the
    first (under) or the last (over, restarting exhausted ones) dataset runs out."""
    interleave_probs: Optional[list[float]] = None
    """Sampling probability per dataset for the interleave strategies; null = equal."""
    template: str = "qwen3"
    cutoff_len: int = 2048
    """Longest tokenised sample (longer ones are truncated and counted); the row length when packing;
    the sequence length of mg pretraining data."""
    max_samples: Optional[int] = None
    """Keep at most this many samples of each dataset (for quick runs)."""
    train_on_prompt: bool = False
    packing: bool = False
    """Concatenate samples into cutoff_len rows; attention stays inside each sample."""
    max_dynamic_patch: int = 12
    """Images (vision-language models): at most this many tiles per image (InternVL dynamic tiling)."""
    use_thumbnail: bool = True
    """Images: add a whole-image thumbnail tile when an image is cut into more than one tile."""
    streaming: bool = False
    """Read and tokenise rows while training (no cache, no length: needs training.max_steps)."""
    buffer_size: int = 16384
    """Rows in the seeded shuffle buffer of a streamed dataset."""
    overwrite_cache: bool = False
    """Tokenise again even when a cache with the same fingerprint exists."""
    cache_dir: Optional[str] = None
    """Where tokenised data is cached; null = $SHARDZOO_CACHE_DIR or ~/.cache/shardzoo/data."""
    preprocessing_num_workers: Optional[int] = None
    """Processes that tokenise in parallel; null or 1 = in the main process."""
    preprocessing_batch_size: int = 1000
    """Rows tokenised per batch call (and per task sent to a worker)."""
    data_manager_type: Literal["lf", "mg"] = "lf"
    """lf: conversations (alpaca/sharegpt) for fine-tuning; mg: raw text pretraining, tokenised once
    into memory-mapped shards and read back as fixed cutoff_len sequences."""
    text_column: str = "text"
    """Column with the raw text of mg pretraining data."""
    append_eod: bool = True
    """mg: end every document with the tokenizer's eos token."""
    skip_bad_rows: bool = False
    """Skip (and count) malformed rows instead of stopping at the first one."""
    disable_shuffling: bool = False
    dataloader_drop_last: bool = False
    """Drop an epoch's incomplete last step; otherwise it is filled with repeated samples whose
    targets are masked, so every sample counts exactly once."""
    dataloader_num_workers: int = 0
    """Worker processes that assemble batches ahead of the step; 0 = in the main process."""


@dataclass
class ParallelConfig:
    # MindSpeed-LLM names
    fsdp_size: Union[int, Literal["auto"]] = "auto"
    fsdp_modules: Optional[list[str]] = None
    """Module patterns sharded as FSDP units; null = the model package's plan (model.layers.{*})."""
    ignored_modules: list[str] = field(default_factory=list)
    recompute: Optional[bool] = None
    """null: on exactly when recompute_modules is given (MindSpeed-MM semantics); true/false force it."""
    recompute_modules: Optional[list[str]] = None
    """Modules recomputed when recompute is on; null = the model package's plan."""
    use_reentrant: bool = False
    compile: bool = False
    """torch.compile each module of compile_modules on its own: one graph per block kind, reused by every
    block, with FSDP's per-block hooks and collectives left outside the graphs."""
    compile_modules: Optional[list[str]] = None
    """Modules compiled when compile is on; null = the FSDP units (fsdp_modules or the package's plan)."""
    tp_size: int = 1
    ep_size: int = 1
    """Expert parallel: each group of ep_size consecutive ranks splits the experts of every MoE layer."""
    ep_fsdp_size: Union[int, Literal["auto"]] = "auto"
    """Ranks that FSDP-shard the same experts (dim 1); ep_size * ep_fsdp_size = world size. auto = world / ep_size."""
    ep_modules: Optional[list[str]] = None
    """Routed-expert modules split over ep; null = the model package's plan (model.layers.{*}.mlp.experts)."""
    ep_fsdp_modules: Optional[list[str]] = None
    """Expert modules sharded as their own FSDP units on ep_fsdp; null = ep_modules."""
    ep_dispatcher: Literal["eager", "fused", "mc2"] = "eager"
    """Token exchange: eager (torch permutation), fused (the bound permute ops, e.g. npu_moe_token_permute),
    mc2 (Ascend A3 fused AlltoAllV + grouped matmul)."""
    cp_size: int = 1
    """Context parallel: each group of cp_size consecutive ranks splits the sequence of the same rows."""
    cp_type: Literal["ulysses"] = "ulysses"
    """ulysses: all-to-all from sequence to heads around attention (any attention kernel; heads split over cp)."""
    cp_modules: Optional[list[str]] = None
    """Attention kernels wrapped by context parallel; null = the model package's plan
    (model.layers.{*}.self_attn.core_attention)."""
    # FSDP2 behaviour (MindSpeed-MM fsdp2_config names)
    param_dtype: DtypeName = "bf16"
    reduce_dtype: DtypeName = "fp32"
    output_dtype: Optional[DtypeName] = None
    cast_forward_inputs: bool = True
    reshard_after_forward: bool = True
    offload_to_cpu: bool = False
    pin_memory: bool = True
    num_to_forward_prefetch: int = 0
    num_to_backward_prefetch: int = 0
    fsdp2_config: Optional[str] = None
    """Path of a MindSpeed-MM style fsdp2 yaml, relative to this config file."""


# MindSpeed-MM fsdp2_config.yaml names that differ from ours.
PARALLEL_ALIASES = {"sharding_size": "fsdp_size", "sub_modules_to_wrap": "fsdp_modules"}


@dataclass
class TrainingConfig:
    output_dir: Optional[str] = None
    per_device_train_batch_size: int = 1
    gradient_accumulation_steps: int = 1
    loss_reduction: Literal["token", "square"] = "token"
    """token: the mean over every target token of the step (transformers). square: InternVL 3.5's
    square-root averaging: each sample's target tokens weigh 1/sqrt(its target count), and the loss
    is sum(w * CE) / sum(w) over the step, so long answers count less per token."""
    seed: int = 42
    optimizer: Literal["adamw"] = "adamw"
    lr: float = 1e-5
    weight_decay: float = 0.01
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    adam_epsilon: float = 1e-8
    max_grad_norm: float = 1.0
    lr_scheduler_type: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_ratio: float = 0.0
    min_lr: float = 0.0
    num_train_epochs: float = 1.0
    max_steps: int = -1
    """-1: run num_train_epochs; otherwise stop after this many optimizer steps."""
    save_steps: int = 0
    """Save a checkpoint every this many optimizer steps and at the end; 0 saves none (SIGTERM still saves)."""
    save_total_limit: Optional[int] = None
    """Keep only the newest N checkpoints (older ones are deleted after a save completes); null keeps all."""
    save_checksums: bool = True
    """Store a CRC32 per checkpoint file and verify it on resume (catches corrupted bytes, not only truncation)."""
    resume: str = "auto"
    """auto: continue from the newest complete checkpoint in output_dir if there is one; none: start fresh
    (refused when output_dir already holds checkpoints); or the path of a checkpoint directory."""
    export_hf_at_end: bool = False
    """After the final checkpoint, also write a Hugging Face model folder to <output_dir>/hf."""
    export_dtype: Literal[("auto", *typing.get_args(DtypeName))] = "auto"
    """dtype of exported weights: auto (config.json's dtype, else the trained dtype), float32, bfloat16, float16."""
    logging_steps: int = 1
    device: Literal[("auto", *DEVICE_TYPES)] = "auto"
    progress_bar: bool = True


@dataclass
class OpsConfig:
    """Backend per fused op: 'auto' picks the best one for the device; a name forces it."""

    rms_norm: str = OP_BACKEND_AUTO
    rotary: str = OP_BACKEND_AUTO
    attention: str = OP_BACKEND_AUTO
    swiglu: str = OP_BACKEND_AUTO
    clipped_swiglu: str = OP_BACKEND_AUTO
    cross_entropy: str = OP_BACKEND_AUTO
    grouped_mm: str = OP_BACKEND_AUTO
    moe_permute: str = OP_BACKEND_AUTO
    moe_unpermute: str = OP_BACKEND_AUTO
    loss_chunk_size: int = 512
    """Tokens per chunk of the fused linear + cross-entropy (bounds the fp32 logits held at once)."""


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    ops: OpsConfig = field(default_factory=OpsConfig)
    task: dict = field(default_factory=dict)
    """Options of the model package's training task (e.g. Wan's flow matching: sigma sampling, video
    size, encoders); the task checks them with `build_section` before any heavy work."""
    source: Optional[str] = None
    """The file this config came from (set by load_config, not a YAML key)."""

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("source")
        return d


SECTIONS = {f.name: f.type for f in dataclasses.fields(Config) if f.name != "source"}


# ----------------------------------------------------------------------------- type checking

def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


# Schema types checked by isinstance alone: type -> (accepts, what the error says is expected).
_PLAIN_TYPES = {
    bool: (lambda v: isinstance(v, bool), "true or false"),
    int: (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    str: (lambda v: isinstance(v, str), "a string"),
    dict: (lambda v: isinstance(v, dict), "a mapping"),
}


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Return value checked against tp (ints accepted for floats), or raise ConfigError."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        for arm in typing.get_args(tp):
            try:
                return _coerce(value, arm, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise ConfigError(f"{key}: {value!r} is not allowed; choose one of {_type_name(tp)}")
    if origin is list:
        if isinstance(value, str):  # a single pattern written without brackets
            value = [value]
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
        (item_tp,) = typing.get_args(tp)
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{key}: expected null, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-5" as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp in _PLAIN_TYPES:
        accepts, description = _PLAIN_TYPES[tp]
        if accepts(value):
            return value
        raise ConfigError(f"{key}: expected {description}, got {value!r}")
    raise AssertionError(f"schema type {tp!r} of {key} has no checker")


def _unknown_key(key: str, where: str, valid: list[str]) -> ConfigError:
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return ConfigError(f"{where}{key}: unknown key; {hint}valid keys: {', '.join(sorted(valid))}")


def build_section(cls: type, raw: Any, section: str) -> Any:
    """A dataclass from a mapping of YAML values: unknown keys and wrong types raise ConfigError
    naming `section.key`. Core sections and model packages' option sections are read the same way."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{section}: expected a mapping of keys, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in raw.items():
        if key not in names:
            raise _unknown_key(key, f"{section}.", names)
        kwargs[key] = _coerce(value, hints[key], f"{section}.{key}")
    return cls(**kwargs)


# ----------------------------------------------------------------------------- overrides

def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply `--section.key value` / `--section.key=value` pairs (values parsed as YAML)."""
    i = 0
    while i < len(overrides):
        item = overrides[i]
        if not item.startswith("--"):
            raise ConfigError(f"override {item!r}: expected --section.key VALUE (e.g. --training.lr 1e-5)")
        item = item[2:]
        if "=" in item:
            dotted, text = item.split("=", 1)
            i += 1
        else:
            if i + 1 >= len(overrides):
                raise ConfigError(f"override --{item}: missing value (e.g. --{item} VALUE)")
            dotted, text = item, overrides[i + 1]
            i += 2
        parts = dotted.split(".")
        # model.hf_config is the free-form config.json dict: its keys are one level deeper.
        free_form = len(parts) == 3 and parts[:2] == ["model", "hf_config"]
        if len(parts) != 2 and not free_form:
            raise ConfigError(f"override --{dotted}: expected exactly --section.key (or --model.hf_config.KEY), "
                              f"sections: {', '.join(SECTIONS)}")
        section, key = parts[:2]
        if section not in SECTIONS:
            raise _unknown_key(section, "override --", list(SECTIONS))
        target = raw.setdefault(section, {})
        if target is None:
            target = raw[section] = {}
        if free_form:
            if target.get(key) is None:
                target[key] = {}
            target, key = target[key], parts[2]
        try:
            target[key] = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"override --{dotted}: {text!r} is not a YAML value ({exc.problem}); quote items with "
                              "braces, e.g. --parallel.fsdp_modules \"['model.layers.{*}']\"") from None
    return raw


# ----------------------------------------------------------------------------- loading

def _read_yaml(path: Path, what: str) -> dict:
    if not path.is_file():
        raise ConfigError(f"{what}: file {path} does not exist; check the path "
                          "(relative paths resolve against the current directory)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what}: {path} is not valid YAML: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{what}: {path} must hold a mapping of sections, got {type(data).__name__}")
    return data


def _normalise_parallel(raw_parallel: dict, base_dir: Path) -> dict:
    """Merge an external fsdp2 yaml and map MindSpeed-MM aliases to our names."""
    raw_parallel = dict(raw_parallel or {})
    fsdp2_path = raw_parallel.get("fsdp2_config")
    if fsdp2_path is not None:
        if not isinstance(fsdp2_path, str):
            raise ConfigError(f"parallel.fsdp2_config: expected a path string, got {fsdp2_path!r}")
        path = Path(fsdp2_path)
        if not path.is_absolute():
            path = base_dir / path
        if not path.is_file():
            raise ConfigError(f"parallel.fsdp2_config: file {path} does not exist "
                              "(a relative path resolves against the directory of the config file)")
        external = _read_yaml(path, "parallel.fsdp2_config")
        for key, value in external.items():
            if key in raw_parallel and raw_parallel[key] != value:
                raise ConfigError(f"parallel.{key}: set both inline ({raw_parallel[key]!r}) and in {path} "
                                  f"({value!r}); keep one")
            raw_parallel[key] = value
    for alias, ours in PARALLEL_ALIASES.items():
        if alias in raw_parallel:
            value = raw_parallel.pop(alias)
            if alias == "sharding_size" and value is None:
                value = 1  # MindSpeed-MM: None means no sharding
            if ours in raw_parallel and raw_parallel[ours] != value:
                raise ConfigError(f"parallel.{alias} ({value!r}) and parallel.{ours} ({raw_parallel[ours]!r}) "
                                  "name the same setting with different values; keep one")
            raw_parallel[ours] = value
    return raw_parallel


def _free_section(raw: Any, section: str) -> dict:
    """A section whose keys its consumer checks (task: the model package's task options)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{section}: expected a mapping of keys, got {raw!r}")
    return dict(raw)


def config_from_dict(raw: dict, base_dir: str | Path = ".", source: str | None = None) -> Config:
    raw = dict(raw)
    for key in raw:
        if key not in SECTIONS:
            raise _unknown_key(key, "", list(SECTIONS))
    raw["parallel"] = _normalise_parallel(raw.get("parallel"), Path(base_dir))
    sections = {name: _free_section(raw.get(name), name) if cls is dict else build_section(cls, raw.get(name), name)
                for name, cls in ((n, typing.get_type_hints(Config)[n]) for n in SECTIONS)}
    cfg = Config(**sections, source=source)
    validate_values(cfg)
    return cfg


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    path = Path(path)
    raw = _read_yaml(path, "config")
    raw = apply_overrides(raw, list(overrides or []))
    return config_from_dict(raw, base_dir=path.parent, source=str(path))


# ----------------------------------------------------------------------------- semantic checks

def _require(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


def validate_values(cfg: Config) -> None:
    """Checks on single values and their combinations that need no files and no world size."""
    m, d, p, t, o = cfg.model, cfg.data, cfg.parallel, cfg.training, cfg.ops
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
    _require(o.loss_chunk_size >= 1, "ops.loss_chunk_size: must be >= 1")
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
    # Parallelisms that later releases add: refuse rather than ignore.
    _require(p.tp_size >= 1, f"parallel.tp_size: {p.tp_size} must be >= 1")
    _require(p.tp_size == 1, f"parallel.tp_size={p.tp_size}: tensor parallel is not available in this version of "
             "shardzoo; set parallel.tp_size: 1")


def _validate_data(d: DataConfig, t: TrainingConfig) -> None:
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
    if d.data_manager_type == "mg":
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
                 "folder with config.json (hub names are not fetched: download the model first)")
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


def mesh_shape(cfg: Config, world_size: int) -> tuple[int, int]:
    """(replicate, shard) sizes of the data-parallel mesh, or ConfigError if impossible."""
    p = cfg.parallel
    shard = world_size if p.fsdp_size == "auto" else p.fsdp_size
    _require(world_size % shard == 0,
             f"parallel.fsdp_size={shard} does not divide the world size {world_size}; use a divisor of "
             f"{world_size} or 'auto' (= {world_size})")
    return world_size // shard, shard


def context_parallel_shape(cfg: Config, world_size: int) -> tuple[int, int]:
    """(data-parallel size, cp size): the ranks reading different rows, and the ranks splitting each row."""
    cp = cfg.parallel.cp_size
    _require(world_size % cp == 0, f"parallel.cp_size={cp} does not divide the world size {world_size}; use a "
             f"divisor of {world_size}")
    return world_size // cp, cp


def expert_mesh_shape(cfg: Config, world_size: int) -> tuple[int, int]:
    """(ep_fsdp, ep) sizes of the expert mesh, or ConfigError if impossible. (1, 1) without EP."""
    p = cfg.parallel
    if p.ep_size == 1:
        _require(p.ep_fsdp_size in ("auto", 1), f"parallel.ep_fsdp_size={p.ep_fsdp_size}: expert-FSDP splits the "
                 "ranks of expert parallelism; set parallel.ep_size > 1, or ep_fsdp_size: auto")
        return 1, 1
    replicate, shard = mesh_shape(cfg, world_size)
    _require(replicate == 1, f"parallel.ep_size={p.ep_size} with parallel.fsdp_size={shard} < world size "
             f"{world_size}: expert parallel together with replicated (HSDP) data parallel is not available in this "
             "version; set parallel.fsdp_size: auto")
    _require(world_size % p.ep_size == 0, f"parallel.ep_size={p.ep_size} does not divide the world size "
             f"{world_size}; use a divisor of {world_size}")
    ep_fsdp = world_size // p.ep_size if p.ep_fsdp_size == "auto" else p.ep_fsdp_size
    _require(ep_fsdp * p.ep_size == world_size, f"parallel.ep_fsdp_size={ep_fsdp}: ep_size x ep_fsdp_size "
             f"({p.ep_size} x {ep_fsdp}) must equal the world size {world_size}; set ep_fsdp_size: "
             f"{world_size // p.ep_size} or auto")
    return ep_fsdp, p.ep_size
