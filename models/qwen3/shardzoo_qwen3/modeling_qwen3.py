"""Qwen3 dense decoder (transformers `Qwen3ForCausalLM`), rewritten on shardzoo ops.

Parameter names equal the HF checkpoint names, so the state-dict adapter is the identity (plus
dropping `lm_head.weight` for tied models). Numerics follow docs/model_facts.md §2:

    h = embed(ids)
    per layer:  x = rmsnorm(h)
                q = rope(q_norm(q_proj x)), k = rope(k_norm(k_proj x)), v = v_proj x   (norm over head_dim)
                h = h + o_proj(attention(q, k, v; causal, GQA, window?, documents?))
                h = h + down(silu(gate x) * up x)           with x = rmsnorm(h)
    logits = lm_head(rmsnorm(h))

The model holds no buffers (rope tables are computed per forward from the config), so it can be
built on the meta device and materialised shard by shard.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
from shardzoo import ops
from shardzoo.errors import ConfigError
from shardzoo.modeling import CausalLM, PreNormDecoderLayer, SwiGLUMLP
from transformers import Qwen3Config


def rope_theta(config: Qwen3Config) -> float:
    params = getattr(config, "rope_parameters", None) or {}
    rope_type = params.get("rope_type", "default")
    if rope_type != "default":
        raise ConfigError(f"Qwen3 rope_type {rope_type!r}: only the default rope is implemented; "
                                  "remove rope_scaling from config.json or use the AutoModel path")
    return float(params.get("rope_theta", getattr(config, "rope_theta", 10000.0)))


def head_dim(config: Qwen3Config) -> int:
    # Qwen3 states head_dim explicitly and nH * d != H for most sizes; H / nH only as a fallback.
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


Qwen3RMSNorm = ops.RMSNorm  # normalise in fp32, cast back, then scale


class Qwen3Attention(nn.Module):
    def __init__(self, config: Qwen3Config, layer_idx: int):
        super().__init__()
        self.head_dim = head_dim(config)
        n_heads, n_kv = config.num_attention_heads, config.num_key_value_heads
        bias = config.attention_bias
        self.q_proj = nn.Linear(config.hidden_size, n_heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(config.hidden_size, n_kv * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(config.hidden_size, n_kv * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(n_heads * self.head_dim, config.hidden_size, bias=bias)
        self.q_norm = Qwen3RMSNorm(self.head_dim, config.rms_norm_eps)
        self.k_norm = Qwen3RMSNorm(self.head_dim, config.rms_norm_eps)
        layer_types = getattr(config, "layer_types", None)
        sliding = layer_types is not None and layer_types[layer_idx] == "sliding_attention"
        self.sliding_window = config.sliding_window if sliding else None
        self.core_attention = ops.CoreAttention()

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                document_ids: Optional[torch.Tensor]) -> torch.Tensor:
        b, t, _ = x.shape
        q = self.q_norm(self.q_proj(x).view(b, t, -1, self.head_dim))
        k = self.k_norm(self.k_proj(x).view(b, t, -1, self.head_dim))
        v = self.v_proj(x).view(b, t, -1, self.head_dim)
        q = ops.rotary(q, cos, sin)
        k = ops.rotary(k, cos, sin)
        out = self.core_attention(q, k, v, causal=True, sliding_window=self.sliding_window,
                                  document_ids=document_ids, scale=self.head_dim ** -0.5)
        return self.o_proj(out.reshape(b, t, -1))


class Qwen3MLP(SwiGLUMLP):
    def __init__(self, config: Qwen3Config):
        super().__init__(config.hidden_size, config.intermediate_size)


class Qwen3DecoderLayer(PreNormDecoderLayer):
    def __init__(self, config: Qwen3Config, layer_idx: int):
        super().__init__()
        self.input_layernorm = Qwen3RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = Qwen3Attention(config, layer_idx)
        self.post_attention_layernorm = Qwen3RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = Qwen3MLP(config)


class Qwen3Model(nn.Module):
    def __init__(self, config: Qwen3Config, layer_class: type[nn.Module] = Qwen3DecoderLayer):
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.layers = nn.ModuleList(layer_class(config, i) for i in range(config.num_hidden_layers))
        self.norm = Qwen3RMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(self, input_ids: Optional[torch.Tensor] = None, position_ids: Optional[torch.Tensor] = None,
                document_ids: Optional[torch.Tensor] = None,
                inputs_embeds: Optional[torch.Tensor] = None) -> torch.Tensor:
        """input_ids [B, T] (or their embeddings [B, T, H], e.g. with image features spliced in by a
        vision-language model) -> final hidden states [B, T, H].

        position_ids default to 0..T-1; packed rows pass positions restarting per document and
        their document_ids (see ops.attention).
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Qwen3Model: pass exactly one of input_ids and inputs_embeds")
        h = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        if position_ids is None:
            position_ids = torch.arange(h.shape[1], device=h.device)[None].expand(h.shape[0], -1)
        inv_freq = ops.rope_inv_freq(head_dim(self.config), rope_theta(self.config), device=h.device)
        cos, sin = ops.rope_cos_sin(position_ids, inv_freq, h.dtype)
        for layer in self.layers:
            h = layer(h, cos, sin, document_ids)
        return self.norm(h)


class Qwen3ForCausalLM(CausalLM):
    def __init__(self, config: Qwen3Config, layer_class: type[nn.Module] = Qwen3DecoderLayer):
        super().__init__(config, Qwen3Model(config, layer_class), config.hidden_size, config.vocab_size)
