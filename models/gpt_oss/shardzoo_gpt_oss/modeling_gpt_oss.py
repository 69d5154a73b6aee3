"""GPT-OSS (transformers `GptOssForCausalLM`), rewritten on shardzoo ops and the core MoE.

Parameter names and shapes equal transformers' (v5) state dict, so the HF BF16 layout loads
one to one; the released MXFP4 expert blocks are dequantised by the adapter (spec.py).
Numerics follow docs/model_facts.md §4:

    h = embed(ids)                                         (padding row = pad_token_id: zero gradient)
    cos, sin = YaRN(theta 150000, factor 32, truncate False), both scaled by 0.1 ln(32) + 1
    per layer i (even i: sliding window W, odd i: full causal):
        x = rmsnorm(h)                                     (weight multiplied in fp32, then cast)
        q, k, v = x Wq + bq, x Wk + bk, x Wv + bv;  q, k = rope(q), rope(k)   (half-split pairing)
        h = h + o_proj(attention(q, k, v; GQA, sinks per query head))
        x = rmsnorm(h)
        logits = x Wr^T + br;  w, e = softmax(top_k(logits))                (top-k first, then softmax)
        per chosen expert: gu = x @ gate_up[e] + b;  gate, up = gu[0::2], gu[1::2]
            y = (clamp(up, -L, L) + 1) * g * sigmoid(alpha g),  g = clamp(gate, max=L)
            out_e = y @ down[e] + b
        h = h + sum_k w_k out_{e_k}
    logits = lm_head(rmsnorm(h))
"""

from __future__ import annotations

import functools
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from shardzoo import ops
from shardzoo.errors import ConfigError
from shardzoo.modeling import CausalLM, PreNormDecoderLayer
from shardzoo.moe import GroupedExperts, record_routing, topk_then_softmax
from shardzoo.moe.routing_stats import aux_loss_coef, router_probs
from transformers import GptOssConfig

# The released models' activation constants. transformers made them config fields (swiglu_alpha,
# swiglu_limit) only in later v5 releases; earlier ones, e.g. 5.17, hard-code these values and their
# configs have neither attribute.
SWIGLU_ALPHA, SWIGLU_LIMIT = 1.702, 7.0
ROPE_KEYS = {"rope_type", "rope_theta", "factor", "original_max_position_embeddings", "beta_fast", "beta_slow",
             "truncate", "attention_factor"}


def head_dim(config: GptOssConfig) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def rope_tables(config: GptOssConfig, device: torch.device) -> tuple[torch.Tensor, float]:
    """(inv_freq, attention factor) from config.rope_parameters: YaRN for the released models."""
    params = dict(getattr(config, "rope_parameters", None) or {})
    theta = float(params.get("rope_theta", getattr(config, "rope_theta", 150000.0)))
    rope_type = params.get("rope_type", "default")
    d = head_dim(config)
    if rope_type == "default":
        return ops.rope_inv_freq(d, theta, device=device), 1.0
    unknown = set(params) - ROPE_KEYS
    if rope_type != "yarn" or unknown:
        raise ConfigError(f"GPT-OSS rope_parameters {params}: only default and yarn (without "
                                  f"{sorted(unknown) or 'other types'}) are implemented")
    return ops.yarn_inv_freq(
        d, theta, float(params["factor"]), int(params["original_max_position_embeddings"]),
        beta_fast=float(params.get("beta_fast") or 32), beta_slow=float(params.get("beta_slow") or 1),
        truncate=bool(params.get("truncate", True)), attention_factor=params.get("attention_factor"), device=device)


class GptOssRMSNorm(ops.RMSNorm):
    def __init__(self, dim: int, eps: float):
        super().__init__(dim, eps, weight_in_fp32=True)  # scale in fp32, cast last


class GptOssAttention(nn.Module):
    def __init__(self, config: GptOssConfig, layer_idx: int):
        super().__init__()
        self.head_dim = head_dim(config)
        n_heads, n_kv, bias = config.num_attention_heads, config.num_key_value_heads, config.attention_bias
        self.q_proj = nn.Linear(config.hidden_size, n_heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(config.hidden_size, n_kv * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(config.hidden_size, n_kv * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(n_heads * self.head_dim, config.hidden_size, bias=bias)
        self.sinks = nn.Parameter(torch.empty(n_heads))
        sliding = config.layer_types[layer_idx] == "sliding_attention"
        self.sliding_window = config.sliding_window if sliding else None
        self.core_attention = ops.CoreAttention()

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                document_ids: Optional[torch.Tensor]) -> torch.Tensor:
        b, t, _ = x.shape
        q = ops.rotary(self.q_proj(x).view(b, t, -1, self.head_dim), cos, sin)
        k = ops.rotary(self.k_proj(x).view(b, t, -1, self.head_dim), cos, sin)
        v = self.v_proj(x).view(b, t, -1, self.head_dim)
        out = self.core_attention(q, k, v, causal=True, sliding_window=self.sliding_window,
                                  document_ids=document_ids, scale=self.head_dim ** -0.5, sinks=self.sinks)
        return self.o_proj(out.reshape(b, t, -1))


class GptOssMLP(nn.Module):
    def __init__(self, config: GptOssConfig):
        super().__init__()
        self.top_k = config.num_experts_per_tok
        self.router = nn.Linear(config.hidden_size, config.num_local_experts, bias=True)
        activation = functools.partial(ops.clipped_swiglu, alpha=getattr(config, "swiglu_alpha", SWIGLU_ALPHA),
                                       limit=getattr(config, "swiglu_limit", SWIGLU_LIMIT), interleaved=True)
        self.experts = GroupedExperts(config.num_local_experts, config.hidden_size, config.intermediate_size,
                                      activation, bias=True, in_out_layout=True)
        self.with_aux_loss = aux_loss_coef(config) > 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        logits = F.linear(flat, self.router.weight, self.router.bias)
        weights, indices = topk_then_softmax(logits, self.top_k)
        record_routing(logits, indices, router_probs(logits) if self.with_aux_loss else None)
        return self.experts(flat, indices, weights).view_as(x)


class GptOssDecoderLayer(PreNormDecoderLayer):
    def __init__(self, config: GptOssConfig, layer_idx: int):
        super().__init__()
        self.input_layernorm = GptOssRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = GptOssAttention(config, layer_idx)
        self.post_attention_layernorm = GptOssRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = GptOssMLP(config)


class GptOssModel(nn.Module):
    def __init__(self, config: GptOssConfig):
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.layers = nn.ModuleList(GptOssDecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = GptOssRMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(self, input_ids: torch.Tensor, position_ids: Optional[torch.Tensor] = None,
                document_ids: Optional[torch.Tensor] = None) -> torch.Tensor:
        """input_ids [B, T] -> final hidden states [B, T, H] (packed rows: see Qwen3Model.forward)."""
        h = self.embed_tokens(input_ids)
        if position_ids is None:
            position_ids = torch.arange(input_ids.shape[1], device=input_ids.device)[None].expand_as(input_ids)
        inv_freq, attention_factor = rope_tables(self.config, h.device)
        cos, sin = ops.rope_cos_sin(position_ids, inv_freq, h.dtype, scaling=attention_factor)
        for layer in self.layers:
            h = layer(h, cos, sin, document_ids)
        return self.norm(h)


class GptOssForCausalLM(CausalLM):
    def __init__(self, config: GptOssConfig):
        super().__init__(config, GptOssModel(config), config.hidden_size, config.vocab_size)
