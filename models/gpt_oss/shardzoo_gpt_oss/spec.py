"""Registration of the GPT-OSS package: what core needs to build, shard, load and measure it."""

from __future__ import annotations

import torch
from shardzoo.checkpoint import DequantizeMxfp4, StateDictAdapter
from shardzoo.modeling import decoder_tp_plan
from shardzoo.parallel.materialize import default_init
from shardzoo.registry import ModelSpec, ParallelPlan
from transformers import GptOssConfig

from .modeling_gpt_oss import GptOssForCausalLM, head_dim

EXPERTS = "model.layers.{layer}.mlp.experts"


def init_fn(config: GptOssConfig):
    """transformers' init: normal(0, initializer_range) for matrices, expert stacks and sinks; zero
    biases; ones for norms; zero padding row."""
    base = default_init(config.initializer_range)
    pad = config.pad_token_id

    def init(name: str, shape: torch.Size, gen: torch.Generator) -> torch.Tensor:
        if name.endswith(".sinks"):
            return torch.randn(shape, generator=gen) * config.initializer_range
        value = base(name, shape, gen)
        if name == "model.embed_tokens.weight" and pad is not None and pad < shape[0]:
            value[pad] = 0
        return value
    return init


def flops_per_token(config: GptOssConfig, seq_len: int) -> float:
    """6 x active matmul parameters (router, top-k experts; embedding lookup excluded, head included)
    + 12 L heads d T attention (full layers; sliding layers see at most `sliding_window` keys)."""
    h, d, layers = config.hidden_size, head_dim(config), config.num_hidden_layers
    q, kv = config.num_attention_heads * d, config.num_key_value_heads * d
    expert = 3 * h * config.intermediate_size
    per_layer = h * (q + 2 * kv) + q * h + h * config.num_local_experts + config.num_experts_per_tok * expert
    matmul_params = layers * per_layer + config.vocab_size * h
    attended = sum(min(seq_len, config.sliding_window) if t == "sliding_attention" else seq_len
                   for t in config.layer_types)
    return 6 * matmul_params + 12 * config.num_attention_heads * d * attended


def activation_bytes(cfg, config: GptOssConfig, recompute: bool) -> int:
    """shardzoo plan's causal-LM estimate, plus on the CPU the attention scores: SDPA there takes the
    sink column as an additive bias that needs a gradient, so each layer keeps the bias and the
    probabilities, 2 x heads x T x (T + 1) per row (heads of this rank: / tp / cp). The accelerators'
    kernels (flex attention, npu_fusion_attention) keep neither."""
    from shardzoo.device import CPU
    from shardzoo.parallel.fsdp import to_dtype
    from shardzoo.plan import activation_bytes as causal_lm

    base = causal_lm(cfg, config, recompute)
    if cfg.training.device != CPU:
        return base
    p, t = cfg.parallel, cfg.data.cutoff_len
    width = (to_dtype(p.param_dtype) or torch.float32).itemsize
    heads = config.num_attention_heads // (p.tp_size * p.cp_size)
    per_layer = 2 * cfg.training.per_device_train_batch_size * heads * t * (t + 1) * width
    return base + per_layer * (1 if recompute else config.num_hidden_layers)


def tiny_config(**overrides) -> GptOssConfig:
    """Smallest config that exercises every path (model_facts §4): 2 sliding + 2 full layers, GQA,
    nH * d != H, a window shorter than the test sequences, a small swiglu_limit so both clamps fire."""
    fields = dict(vocab_size=128, hidden_size=64, intermediate_size=32, num_hidden_layers=4, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=32, num_local_experts=4, num_experts_per_tok=2, sliding_window=4,
                  max_position_embeddings=131072, swiglu_limit=0.5, rms_norm_eps=1e-5, tie_word_embeddings=False,
                  pad_token_id=3)
    fields.update(overrides)
    return GptOssConfig(**fields)


SPEC = ModelSpec(
    name="gpt_oss",
    config_class=GptOssConfig,
    architectures=("GptOssForCausalLM",),
    model_types=("gpt_oss",),
    build_model=GptOssForCausalLM,
    init_fn=init_fn,
    flops_per_token=flops_per_token,
    tiny_config=tiny_config,
    activation_bytes=activation_bytes,
    # The released checkpoint keeps the expert matrices in MXFP4 (blocks + scales); BF16 copies
    # (and our exports) use transformers' dequantised layout, which is ours.
    adapter=StateDictAdapter(
        ops=(DequantizeMxfp4(f"{EXPERTS}.gate_up_proj_blocks", f"{EXPERTS}.gate_up_proj_scales",
                             f"{EXPERTS}.gate_up_proj"),
             DequantizeMxfp4(f"{EXPERTS}.down_proj_blocks", f"{EXPERTS}.down_proj_scales", f"{EXPERTS}.down_proj")),
        tied_skip=("lm_head.weight",)),
    plan=ParallelPlan(fsdp_modules=("model.layers.{*}",), recompute_modules=("model.layers.{*}",),
                      ep_modules=("model.layers.{*}.mlp.experts",),
                      cp_modules=("model.layers.{*}.self_attn.core_attention",),
                      # Attention split by heads (the sinks with them, kv heads replicated below tp); the
                      # MoE block has nothing split and runs on each rank's own tokens (experts keep EP).
                      tp=decoder_tp_plan(head_params=("{layer}.self_attn.sinks",))),
    packed_documents=True,
)
