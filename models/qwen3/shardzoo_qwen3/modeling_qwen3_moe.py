"""Qwen3-MoE (transformers `Qwen3MoeForCausalLM`): Qwen3 attention and norms, routed experts from
the core MoE. Parameter names equal transformers' v5 state dict. Numerics (model_facts §3):

    per layer: h = h + attention(rmsnorm(h))                 (as Qwen3; a window on every layer if
                                                              use_sliding_window)
               x = rmsnorm(h)
               sparse layer (i not in mlp_only_layers, (i+1) % decoder_sparse_step == 0):
                   p = softmax(x Wg^T) over all experts (fp32); w, e = top_k(p); w /= sum(w) if norm_topk_prob
                   h = h + sum_k w_k down_e(silu(gate_e x) * up_e x)     (gate_up_proj = [gate; up] rows)
               dense layer: h = h + Qwen3 MLP(intermediate_size)
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from shardzoo import ops
from shardzoo.modeling import PreNormDecoderLayer
from shardzoo.moe import GroupedExperts, record_routing, softmax_then_topk
from shardzoo.moe.routing_stats import aux_loss_coef, router_probs
from transformers import Qwen3MoeConfig

from .modeling_qwen3 import Qwen3Attention, Qwen3ForCausalLM, Qwen3MLP, Qwen3RMSNorm


def gated_silu(gate_up: torch.Tensor) -> torch.Tensor:
    """[rows, 2I] with the gate in the first half -> silu(gate) * up."""
    gate, up = gate_up.chunk(2, dim=-1)
    return ops.swiglu(gate, up)


class Qwen3MoeSparseMoeBlock(nn.Module):
    def __init__(self, config: Qwen3MoeConfig):
        super().__init__()
        self.top_k, self.norm_topk_prob = config.num_experts_per_tok, config.norm_topk_prob
        self.gate = nn.Linear(config.hidden_size, config.num_experts, bias=False)
        self.experts = GroupedExperts(config.num_experts, config.hidden_size, config.moe_intermediate_size,
                                      gated_silu, bias=False, in_out_layout=False)
        self.with_aux_loss = aux_loss_coef(config) > 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        logits = F.linear(flat, self.gate.weight)
        weights, indices = softmax_then_topk(logits, self.top_k, self.norm_topk_prob)
        record_routing(logits, indices, router_probs(logits) if self.with_aux_loss else None)
        return self.experts(flat, indices, weights).view_as(x)


def is_sparse(config: Qwen3MoeConfig, layer_idx: int) -> bool:
    return (layer_idx not in config.mlp_only_layers and config.num_experts > 0
            and (layer_idx + 1) % config.decoder_sparse_step == 0)


class Qwen3MoeDecoderLayer(PreNormDecoderLayer):
    def __init__(self, config: Qwen3MoeConfig, layer_idx: int):
        super().__init__()
        self.input_layernorm = Qwen3RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = Qwen3Attention(config, layer_idx)
        # transformers applies config.sliding_window (set only with use_sliding_window) to every layer.
        self.self_attn.sliding_window = config.sliding_window
        self.post_attention_layernorm = Qwen3RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = Qwen3MoeSparseMoeBlock(config) if is_sparse(config, layer_idx) else Qwen3MLP(config)


class Qwen3MoeForCausalLM(Qwen3ForCausalLM):
    """Qwen3's model and head around Qwen3-MoE decoder layers."""

    def __init__(self, config: Qwen3MoeConfig):
        super().__init__(config, Qwen3MoeDecoderLayer)
