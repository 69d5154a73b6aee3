"""Registration of the Qwen3 package (Qwen3 dense and Qwen3-MoE): what core needs to build, shard, load
and measure them."""

from __future__ import annotations

import torch
from shardzoo.checkpoint import Concat, Stack, StateDictAdapter
from shardzoo.modeling import decoder_tp_plan
from shardzoo.parallel.materialize import default_init
from shardzoo.registry import ModelSpec, ParallelPlan
from transformers import Qwen3Config, Qwen3MoeConfig

from .modeling_qwen3 import Qwen3ForCausalLM, head_dim
from .modeling_qwen3_moe import Qwen3MoeForCausalLM, is_sparse


def init_fn(config: Qwen3Config):
    """HF's init: normal(0, initializer_range) matrices, ones for norms, zero padding row."""
    base = default_init(config.initializer_range)
    pad = config.pad_token_id

    def init(name: str, shape: torch.Size, gen: torch.Generator) -> torch.Tensor:
        value = base(name, shape, gen)
        if name == "model.embed_tokens.weight" and pad is not None:
            value[pad] = 0
        return value
    return init


def flops_per_token(config: Qwen3Config, seq_len: int) -> float:
    """6 x matmul parameters (embedding lookup excluded, head included) + 12 L heads d T attention."""
    h, d, layers = config.hidden_size, head_dim(config), config.num_hidden_layers
    q, kv = config.num_attention_heads * d, config.num_key_value_heads * d
    per_layer = h * (q + 2 * kv) + q * h + 3 * h * config.intermediate_size
    matmul_params = layers * per_layer + config.vocab_size * h
    return 6 * matmul_params + 12 * layers * config.num_attention_heads * d * seq_len


# q_norm/k_norm normalise each head over head_dim: they run on this rank's heads. Qwen3-MoE shares it.
QWEN3_HEAD_NORMS = ("{layer}.self_attn.q_norm", "{layer}.self_attn.k_norm")
QWEN3_TP = decoder_tp_plan(head_norms=QWEN3_HEAD_NORMS)


def tiny_config(**overrides) -> Qwen3Config:
    """Smallest config that exercises every path: GQA, head_dim * heads != hidden."""
    fields = dict(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=32, rope_theta=1e6,
                  rms_norm_eps=1e-6, max_position_embeddings=256, tie_word_embeddings=False,
                  attention_bias=False)
    fields.update(overrides)
    return Qwen3Config(**fields)


SPEC = ModelSpec(
    name="qwen3",
    config_class=Qwen3Config,
    architectures=("Qwen3ForCausalLM",),
    model_types=("qwen3",),
    build_model=Qwen3ForCausalLM,
    init_fn=init_fn,
    flops_per_token=flops_per_token,
    tiny_config=tiny_config,
    adapter=StateDictAdapter(tied_skip=("lm_head.weight",)),
    plan=ParallelPlan(fsdp_modules=("model.layers.{*}",), recompute_modules=("model.layers.{*}",),
                      cp_modules=("model.layers.{*}.self_attn.core_attention",), tp=QWEN3_TP),
    packed_documents=True,
)


# ----------------------------------------------------------------------------- Qwen3-MoE

def moe_flops_per_token(config: Qwen3MoeConfig, seq_len: int) -> float:
    """As flops_per_token, with the router and the top-k experts' matmuls in sparse layers."""
    h, d, layers = config.hidden_size, head_dim(config), config.num_hidden_layers
    q, kv = config.num_attention_heads * d, config.num_key_value_heads * d
    attention = h * (q + 2 * kv) + q * h
    sparse = h * config.num_experts + config.num_experts_per_tok * 3 * h * config.moe_intermediate_size
    dense = 3 * h * config.intermediate_size
    matmul_params = sum(attention + (sparse if is_sparse(config, i) else dense) for i in range(layers))
    matmul_params += config.vocab_size * h
    return 6 * matmul_params + 12 * layers * config.num_attention_heads * d * seq_len


def moe_tiny_config(**overrides) -> Qwen3MoeConfig:
    """The Qwen3 tiny config plus 8 experts, top-2, and one dense layer (model_facts §3)."""
    fields = dict(vocab_size=128, hidden_size=64, intermediate_size=96, moe_intermediate_size=32,
                  num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2, head_dim=32, rope_theta=1e6,
                  rms_norm_eps=1e-6, max_position_embeddings=256, tie_word_embeddings=False, num_experts=8,
                  num_experts_per_tok=2, norm_topk_prob=True, mlp_only_layers=[1], decoder_sparse_step=1)
    fields.update(overrides)
    return Qwen3MoeConfig(**fields)


EXPERTS = "model.layers.{layer}.mlp.experts"


def _num_experts(config: Qwen3MoeConfig) -> int:
    return config.num_experts


# Hub checkpoints (and transformers' save_pretrained) keep one tensor per expert; ours are the v5
# stacks with gate and up concatenated. Checkpoints already in the stacked layout pass unchanged.
MOE_ADAPTER = StateDictAdapter(
    ops=(Stack(f"{EXPERTS}.{{expert}}.gate_proj.weight", f"{EXPERTS}.gate_proj", _num_experts),
         Stack(f"{EXPERTS}.{{expert}}.up_proj.weight", f"{EXPERTS}.up_proj", _num_experts),
         Stack(f"{EXPERTS}.{{expert}}.down_proj.weight", f"{EXPERTS}.down_proj", _num_experts),
         Concat((f"{EXPERTS}.gate_proj", f"{EXPERTS}.up_proj"), f"{EXPERTS}.gate_up_proj", dim=1)),
    tied_skip=("lm_head.weight",))

MOE_SPEC = ModelSpec(
    name="qwen3_moe",
    config_class=Qwen3MoeConfig,
    architectures=("Qwen3MoeForCausalLM",),
    model_types=("qwen3_moe",),
    build_model=Qwen3MoeForCausalLM,
    init_fn=init_fn,
    flops_per_token=moe_flops_per_token,
    tiny_config=moe_tiny_config,
    adapter=MOE_ADAPTER,
    plan=ParallelPlan(fsdp_modules=("model.layers.{*}",), recompute_modules=("model.layers.{*}",),
                      ep_modules=("model.layers.{*}.mlp.experts",),
                      cp_modules=("model.layers.{*}.self_attn.core_attention",),
                      # Attention and the dense layers' MLP split; a sparse layer's MoE block has nothing
                      # split and runs on each rank's own tokens (its experts keep EP).
                      tp=QWEN3_TP),
    packed_documents=True,
)
