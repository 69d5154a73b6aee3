"""The config schema: sections model / data / parallel / training / ops as typed dataclasses.

Field names follow the MindSpeed-LLM FSDP2 configs; the MindSpeed-MM `fsdp2_config.yaml` keys and
the older spellings of moved keys are mapped onto these names while loading (loading.py, ALIASES).
A field's docstring is its documentation: docs/config.md points here.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Literal, Optional, Union

from ..device import DEVICE_TYPES

DtypeName = Literal["fp32", "float32", "bf16", "bfloat16", "fp16", "float16"]
OP_BACKEND_AUTO = "auto"
# data.data_manager_type keeps MindSpeed's spellings as its values; the code names the two kinds.
CONVERSATIONS = "lf"
"""Conversation rows (alpaca / sharegpt, LLaMA-Factory style) for fine-tuning."""
PRETRAIN_TEXT = "mg"
"""Raw text for pretraining, tokenised into memory-mapped shards (Megatron style)."""


@dataclass
class ModelConfig:
    model_id: Optional[str] = None
    """Registered model package to use (e.g. qwen3); empty = registry lookup, then AutoModel; `auto` =
    transformers' AutoModelForCausalLM even where a package claims the architecture."""
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
    eval_dataset: Union[str, dict, None] = None
    """Evaluation rows of their own, named like `dataset` (read with the same template, cutoff and
    packing); evaluated every training.eval_steps and at the end."""
    val_size: Union[int, float] = 0
    """Split evaluation rows off the training rows instead: a fraction (0 < f < 1) or a count, chosen
    with the training seed; 0 = none."""
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
    cache_fingerprint: Literal["stat", "content"] = "stat"
    """How the cache knows its data files: stat (path, size, modification time; free) or content (name,
    size and SHA-256 of the bytes: one read of the corpus per run; the cache survives copying the data
    elsewhere and catches an edit that keeps size and mtime)."""
    preprocessing_num_workers: Optional[int] = None
    """Processes that tokenise in parallel; null or 1 = in the main process."""
    preprocessing_batch_size: int = 1000
    """Rows tokenised per batch call (and per task sent to a worker)."""
    data_manager_type: Literal["lf", "mg"] = CONVERSATIONS
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

    @property
    def is_pretraining(self) -> bool:
        return self.data_manager_type == PRETRAIN_TEXT


@dataclass
class ParallelConfig:
    # MindSpeed-LLM names
    fsdp_size: Union[int, Literal["auto"]] = "auto"
    fsdp_modules: Optional[list[str]] = None
    """Module patterns sharded as FSDP units; null = the model package's plan (model.layers.{*})."""
    ignored_modules: list[str] = field(default_factory=list)
    fp32_modules: Optional[list[str]] = None
    """Modules (and bare parameters) kept in fp32 for compute when param_dtype is lower, as the reference
    model keeps them (transformers' / diffusers' _keep_in_fp32_modules); null = the model package's list
    (Wan: time embedding, affine norms, modulation tables) when param_dtype is lower than fp32, [] = none.
    Modules become FSDP units of their own gathered in fp32; bare parameters stay out of FSDP, whole on
    every rank, their gradients summed by the trainer."""
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
    """Tensor parallel with sequence parallel: each group of tp_size consecutive ranks splits every dense
    layer's heads and columns (the innermost axis); FSDP shards over the other ranks."""
    tp_colwise: Optional[list[str]] = None
    """Linear layers split by output features under TP; null = the model package's plan (q/k/v, gate/up).
    Unused when tp_size is 1 (MindSpeed-LLM configs list them either way)."""
    tp_rowwise: Optional[list[str]] = None
    """Linear layers split by input features under TP; null = the model package's plan (o, down)."""
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


@dataclass
class TrainingConfig:
    output_dir: Optional[str] = None
    per_device_train_batch_size: int = 1
    per_device_eval_batch_size: Optional[int] = None
    """Rows per rank per evaluation step; null = per_device_train_batch_size."""
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
    save_async: bool = False
    """Periodic saves copy the model and optimizer state to host memory and write it in a background
    thread while the next steps run (the copy needs host memory for one more set of the rank's states);
    the checkpoint is published when every rank's writes are done. At most one save is in flight; the
    final save, and a save on SIGTERM, are written before the run exits."""
    save_checksums: bool = True
    """Store a CRC32 per checkpoint file and verify it on resume (catches corrupted bytes, not only truncation)."""
    resume: str = "auto"
    """auto: continue from the newest complete checkpoint in output_dir if there is one; none: start fresh
    (refused when output_dir already holds checkpoints); or the path of a checkpoint directory."""
    export_hf_at_end: bool = False
    """After the final checkpoint, also write a Hugging Face model folder to <output_dir>/hf."""
    export_dtype: Literal[("auto", *typing.get_args(DtypeName))] = "auto"
    """dtype of exported weights: auto (config.json's dtype, else the trained dtype), float32, bfloat16, float16."""
    loss_chunk_size: int = 512
    """Tokens per chunk of the fused linear + cross-entropy (bounds the fp32 logits held at once).
    Older configs wrote it as ops.loss_chunk_size, still accepted."""
    logging_steps: int = 1
    eval_steps: int = 0
    """Evaluate every this many optimizer steps (with data.eval_dataset or data.val_size); 0 = only at the
    end. Evaluation never changes the training: its rows, order and randomness are its own."""
    report_to: Optional[list[Literal["tensorboard", "wandb", "none"]]] = None
    """Experiment trackers for the step metrics besides metrics.jsonl; null = TensorBoard when installed.
    W&B reads its own environment (WANDB_MODE=offline works without network, WANDB_PROJECT)."""
    profile_step_start: int = -1
    """Profile optimizer steps profile_step_start..profile_step_end (1-based, inclusive) with the torch
    profiler (torch_npu's on NPU); -1 profiles nothing (MindSpeed's names for these keys)."""
    profile_step_end: int = -1
    profile_ranks: list[int] = field(default_factory=lambda: [0])
    """Ranks that profile; [-1] = every rank."""
    profile_level: Literal["level0", "level1", "level2"] = "level0"
    """How much the NPU side records (torch_npu ProfilerLevel); torch's profiler has no levels."""
    profile_with_memory: bool = False
    profile_with_stack: bool = False
    profile_record_shapes: bool = False
    profile_save_path: Optional[str] = None
    """Where traces go; null = <output_dir>/profile."""
    device: Literal[("auto", *DEVICE_TYPES)] = "auto"
    progress_bar: bool = True


@dataclass
class OpsConfig:
    """Backend per fused op: 'auto' picks the best one for the device; a name forces it. One field per
    op registered in shardzoo.ops (a test holds the two lists equal; `shardzoo ops` shows the backends)."""

    rms_norm: str = OP_BACKEND_AUTO
    rotary: str = OP_BACKEND_AUTO
    attention: str = OP_BACKEND_AUTO
    swiglu: str = OP_BACKEND_AUTO
    clipped_swiglu: str = OP_BACKEND_AUTO
    linear_cross_entropy: str = OP_BACKEND_AUTO
    grouped_mm: str = OP_BACKEND_AUTO
    moe_permute: str = OP_BACKEND_AUTO
    moe_unpermute: str = OP_BACKEND_AUTO


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
