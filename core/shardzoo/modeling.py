"""What the rewritten causal LMs of the zoo share: the pre-norm decoder layer, the SwiGLU MLP, and a
decoder under a language-model head."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from . import ops
from .parallel.tensor import TensorParallelPlan


class PreNormDecoderLayer(nn.Module):
    """h += attn(norm(h)); h += mlp(norm(h)). A model's layer builds `input_layernorm`, `self_attn`
    (x, cos, sin, document_ids -> out), `post_attention_layernorm` and `mlp` with HF's names."""

    def forward(self, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                document_ids: Optional[torch.Tensor] = None) -> torch.Tensor:
        h = h + self.self_attn(self.input_layernorm(h), cos, sin, document_ids)
        return h + self.mlp(self.post_attention_layernorm(h))


def decoder_tp_plan(*, head_norms: tuple[str, ...] = (), head_params: tuple[str, ...] = (),
                    decoder: str = "model", inputs_embeds_entry: bool = False) -> TensorParallelPlan:
    """Tensor parallel of a PreNormDecoderLayer stack with HF's names under `decoder`: q/k/v and the
    SwiGLU gate/up split by heads and columns, o and down by rows, the three residual-stream norms
    sequence-parallel; an MoE layer's `mlp` (no gate_proj) runs on each rank's tokens. Per-head patterns
    name the layer as `{layer}`. `inputs_embeds_entry`: the decoder is called with inputs_embeds (a
    vision-language model), the sequence split starts there."""
    layer = f"{decoder}.layers.{{*}}"
    dense_mlp = f"{layer}.mlp"
    head_norms = tuple(p.format(layer=layer) for p in head_norms)
    head_params = tuple(p.format(layer=layer) for p in head_params)
    return TensorParallelPlan(
        colwise=(*(f"{layer}.self_attn.{p}_proj" for p in "qkv"), f"{dense_mlp}.gate_proj", f"{dense_mlp}.up_proj"),
        rowwise=(f"{layer}.self_attn.o_proj", f"{dense_mlp}.down_proj"),
        kv_projections=(f"{layer}.self_attn.k_proj", f"{layer}.self_attn.v_proj"),
        sequence_norms=(f"{layer}.input_layernorm", f"{layer}.post_attention_layernorm", f"{decoder}.norm"),
        head_norms=head_norms, head_params=head_params,
        block_inputs=(f"{layer}.self_attn", dense_mlp), embedding=f"{decoder}.embed_tokens",
        inputs_embeds_entry=decoder if inputs_embeds_entry else None)


class SwiGLUMLP(nn.Module):
    """down(silu(gate x) * up x), no biases (Qwen3's MLP, and the dense MLP of Qwen3-MoE)."""

    def __init__(self, hidden_size: int, intermediate_size: int):
        super().__init__()
        self.gate_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.up_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(ops.swiglu(self.gate_proj(x), self.up_proj(x)))


class CausalLM(nn.Module):
    """`model` (the decoder: ids -> final hidden states, holding `embed_tokens`) under `lm_head`, tied to
    the input embedding when config.tie_word_embeddings. It has transformers' accessors, so the tasks
    treat our models and HF models alike; training goes through the task, which never builds the
    full logits that forward returns."""

    def __init__(self, config, model: nn.Module, hidden_size: int, vocab_size: int):
        super().__init__()
        self.config = config
        self.model = model
        self.lm_head = nn.Linear(hidden_size, vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.get_input_embeddings().weight

    def get_decoder(self) -> nn.Module:
        return self.model

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def forward(self, input_ids: torch.Tensor, position_ids: Optional[torch.Tensor] = None,
                document_ids: Optional[torch.Tensor] = None, **inputs) -> torch.Tensor:
        """Full logits [B, T, V]."""
        return self.lm_head(self.model(input_ids, position_ids=position_ids, document_ids=document_ids, **inputs))
