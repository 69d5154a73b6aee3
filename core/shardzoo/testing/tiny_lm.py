"""A tiny causal LM that ships with the core, so the core's own tests (config, checkpoints, resume,
faults, FSDP2, context parallel) run with no model package installed.

A pre-norm decoder on the core ops, written as the zoo's model files are:

    h = embed(ids)
    per layer:  h = h + o_proj(attention(rope(q_proj x), rope(k_proj x), v_proj x))   x = rmsnorm(h)
                h = h + down(silu(gate x) * up x)                                      x = rmsnorm(h)
    logits = lm_head(rmsnorm(h))

It is registered as `model_id: tiny_lm` (entry point in core/pyproject.toml). It has no reference
implementation to match: the model packages hold the parity tests; this one only has to train.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
from transformers import PretrainedConfig

from .. import ops
from ..checkpoint import StateDictAdapter
from ..modeling import CausalLM, PreNormDecoderLayer, SwiGLUMLP, decoder_tp_plan
from ..parallel.materialize import default_init
from ..registry import ModelSpec, ParallelPlan


class TinyLMConfig(PretrainedConfig):
    model_type = "shardzoo_tiny_lm"

    def __init__(self, vocab_size: int = 1024, hidden_size: int = 64, intermediate_size: int = 128,
                 num_hidden_layers: int = 2, num_attention_heads: int = 4, num_key_value_heads: int = 2,
                 head_dim: Optional[int] = None, rms_norm_eps: float = 1e-6, rope_theta: float = 10000.0,
                 max_position_embeddings: int = 2048, initializer_range: float = 0.02,
                 tie_word_embeddings: bool = True, **kwargs):
        self.vocab_size, self.hidden_size, self.intermediate_size = vocab_size, hidden_size, intermediate_size
        self.num_hidden_layers, self.num_attention_heads = num_hidden_layers, num_attention_heads
        self.num_key_value_heads = num_key_value_heads
        self.head_dim = head_dim or hidden_size // num_attention_heads
        self.rms_norm_eps, self.rope_theta = rms_norm_eps, rope_theta
        self.max_position_embeddings, self.initializer_range = max_position_embeddings, initializer_range
        kwargs.setdefault("architectures", ["TinyLMForCausalLM"])
        super().__init__(tie_word_embeddings=tie_word_embeddings, **kwargs)


class TinyLMAttention(nn.Module):
    def __init__(self, config: TinyLMConfig):
        super().__init__()
        d, hidden = config.head_dim, config.hidden_size
        self.head_dim = d
        self.q_proj = nn.Linear(hidden, config.num_attention_heads * d, bias=False)
        self.k_proj = nn.Linear(hidden, config.num_key_value_heads * d, bias=False)
        self.v_proj = nn.Linear(hidden, config.num_key_value_heads * d, bias=False)
        self.o_proj = nn.Linear(config.num_attention_heads * d, hidden, bias=False)
        self.core_attention = ops.CoreAttention()

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                document_ids: Optional[torch.Tensor]) -> torch.Tensor:
        b, t, _ = x.shape
        q = ops.rotary(self.q_proj(x).view(b, t, -1, self.head_dim), cos, sin)
        k = ops.rotary(self.k_proj(x).view(b, t, -1, self.head_dim), cos, sin)
        v = self.v_proj(x).view(b, t, -1, self.head_dim)
        out = self.core_attention(q, k, v, causal=True, document_ids=document_ids, scale=self.head_dim ** -0.5)
        return self.o_proj(out.reshape(b, t, -1))


class TinyLMLayer(PreNormDecoderLayer):
    def __init__(self, config: TinyLMConfig):
        super().__init__()
        self.input_layernorm = ops.RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = TinyLMAttention(config)
        self.post_attention_layernorm = ops.RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = SwiGLUMLP(config.hidden_size, config.intermediate_size)


class TinyLMModel(nn.Module):
    def __init__(self, config: TinyLMConfig):
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(TinyLMLayer(config) for _ in range(config.num_hidden_layers))
        self.norm = ops.RMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(self, input_ids: torch.Tensor, position_ids: Optional[torch.Tensor] = None,
                document_ids: Optional[torch.Tensor] = None) -> torch.Tensor:
        h = self.embed_tokens(input_ids)
        if position_ids is None:
            position_ids = torch.arange(h.shape[1], device=h.device)[None].expand(h.shape[0], -1)
        inv_freq = ops.rope_inv_freq(self.config.head_dim, self.config.rope_theta, device=h.device)
        cos, sin = ops.rope_cos_sin(position_ids, inv_freq, h.dtype)
        for layer in self.layers:
            h = layer(h, cos, sin, document_ids)
        return self.norm(h)


class TinyLMForCausalLM(CausalLM):
    def __init__(self, config: TinyLMConfig):
        super().__init__(config, TinyLMModel(config), config.hidden_size, config.vocab_size)


def flops_per_token(config: TinyLMConfig, seq_len: int) -> float:
    """6 x matmul parameters (head included) + 12 L heads d T attention."""
    h, d, layers = config.hidden_size, config.head_dim, config.num_hidden_layers
    q, kv = config.num_attention_heads * d, config.num_key_value_heads * d
    matmul_params = layers * (h * (q + 2 * kv) + q * h + 3 * h * config.intermediate_size) + config.vocab_size * h
    return 6 * matmul_params + 12 * layers * config.num_attention_heads * d * seq_len


SPEC = ModelSpec(
    name="tiny_lm",
    config_class=TinyLMConfig,
    architectures=("TinyLMForCausalLM",),
    model_types=(TinyLMConfig.model_type,),
    build_model=TinyLMForCausalLM,
    init_fn=lambda config: default_init(config.initializer_range),
    flops_per_token=flops_per_token,
    tiny_config=TinyLMConfig,
    adapter=StateDictAdapter(tied_skip=("lm_head.weight",)),
    plan=ParallelPlan(cp_modules=("model.layers.{*}.self_attn.core_attention",), tp=decoder_tp_plan()),
    packed_documents=True,
)
