"""What every rewritten causal LM of the zoo shares: a decoder under a language-model head."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn


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
