"""InternVL 3.5 (transformers `InternVLForConditionalGeneration`): InternViT, pixel shuffle, the mlp1
projector and a Qwen3 language model reused from shardzoo_qwen3. Numerics follow
docs/model_facts.md §5:

    per tile:  f = vit(pixels)[1:]                   (last layer, CLS dropped) -> [32, 32, C] grid
               f = pixel_shuffle(f)                  -> [16, 16, 4C], token (i, j) holds the channels of
                                                        x(2i,2j), x(2i,2j+1), x(2i+1,2j), x(2i+1,2j+1)
               f = linear_2(gelu(linear_1(layer_norm(f))))          (LayerNorm eps 1e-5) -> [256, H]
    e = embed(ids); the <IMG_CONTEXT> positions, in order, take the tiles' features (counts must match)
    h = qwen3_decoder(e); logits = lm_head(h)

Parameter names equal the HF-format checkpoint's; the original InternVLChatModel layout is
converted by the adapter (spec.py).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from shardzoo.errors import ConfigError
from shardzoo.modeling import CausalLM
from shardzoo_qwen3.modeling_qwen3 import Qwen3DecoderLayer, Qwen3Model
from shardzoo_qwen3.modeling_qwen3_moe import Qwen3MoeDecoderLayer
from transformers import InternVLConfig

from .modeling_intern_vit import InternVisionModel

DECODER_LAYERS = {"qwen3": Qwen3DecoderLayer, "qwen3_moe": Qwen3MoeDecoderLayer}


def pixel_shuffle(features: torch.Tensor, scale: float) -> torch.Tensor:
    """[N, W, H, C] -> [N, W*scale, H*scale, C/scale^2] in InternVL's (ps_version v2) channel order,
    which is not F.pixel_unshuffle's."""
    n, w, h, c = features.shape
    if (w * scale) % 1 or (h * scale) % 1:
        raise ValueError(f"pixel shuffle: a {w}x{h} feature grid does not scale by {scale}")
    x = features.view(n, w, int(h * scale), int(c / scale)).permute(0, 2, 1, 3).contiguous()
    x = x.view(n, int(h * scale), int(w * scale), int(c / scale ** 2))
    return x.permute(0, 2, 1, 3).contiguous()


class InternVLMultiModalProjector(nn.Module):
    def __init__(self, config: InternVLConfig):
        super().__init__()
        width = config.vision_config.hidden_size * int(1 / config.downsample_ratio) ** 2
        hidden = config.text_config.hidden_size
        if config.projector_hidden_act != "gelu":
            raise ConfigError(f"projector_hidden_act {config.projector_hidden_act!r}: only gelu is implemented")
        self.layer_norm = nn.LayerNorm(width)
        self.linear_1 = nn.Linear(width, hidden)
        self.linear_2 = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.gelu(self.linear_1(self.layer_norm(x))))


class InternVLModel(nn.Module):
    """The decoder the task calls: (ids, images) -> final hidden states."""

    def __init__(self, config: InternVLConfig):
        super().__init__()
        text = config.text_config
        if text.model_type not in DECODER_LAYERS:
            raise ConfigError(f"InternVL text_config.model_type {text.model_type!r}: the package builds "
                                      f"{sorted(DECODER_LAYERS)} language models")
        if config.vision_feature_layer != -1 or config.vision_feature_select_strategy != "default":
            raise ConfigError("InternVL: only vision_feature_layer -1 with the CLS token dropped (strategy "
                                      "'default') is implemented, as every released InternVL 3.5 uses")
        self.config = config
        self.vision_tower = InternVisionModel(config.vision_config)
        self.multi_modal_projector = InternVLMultiModalProjector(config)
        self.language_model = Qwen3Model(text, DECODER_LAYERS[text.model_type])

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[tiles, 3, S, S] -> [tiles, image_seq_length, H]."""
        f = self.vision_tower(pixel_values)[:, 1:]
        side = int(f.shape[1] ** 0.5)
        f = pixel_shuffle(f.reshape(f.shape[0], side, side, -1), self.config.downsample_ratio)
        return self.multi_modal_projector(f.reshape(f.shape[0], -1, f.shape[-1]))

    def forward(self, input_ids: torch.Tensor, position_ids: Optional[torch.Tensor] = None,
                document_ids: Optional[torch.Tensor] = None,
                pixel_values: Optional[torch.Tensor] = None) -> torch.Tensor:
        embeds = self.language_model.embed_tokens(input_ids)
        slots = input_ids == self.config.image_token_id
        n_slots = int(slots.sum())
        if pixel_values is not None:
            features = self.image_features(pixel_values).to(embeds.dtype)
            if n_slots != features.shape[0] * features.shape[1]:
                raise ValueError(f"InternVL: {n_slots} image tokens (id {self.config.image_token_id}) in the batch but "
                                 f"{features.shape[0]} tiles x {features.shape[1]} features; every image must be "
                                 "written as exactly image_seq_length tokens per tile")
            embeds = embeds.masked_scatter(slots[..., None], features)
        elif n_slots:
            raise ValueError(f"InternVL: {n_slots} image tokens in the batch but no pixel_values")
        elif self.training:
            # A text-only micro-batch still runs the vision tower (on one blank tile, weighted 0):
            # under FSDP every rank must gather and reduce the same units in the same order, and
            # another rank's micro-batch may hold images (InternVL's dummy tiles, image_flags 0).
            size = self.vision_tower.embeddings.grid[0] * self.vision_tower.embeddings.patch_size[0]
            blank = embeds.new_zeros(1, 3, size, size)
            embeds = embeds + 0.0 * self.image_features(blank).sum().to(embeds.dtype)
        return self.language_model(position_ids=position_ids, document_ids=document_ids, inputs_embeds=embeds)


class InternVLForConditionalGeneration(CausalLM):
    """The causal-LM task calls it like a text model, with pixel_values next to the ids. The top-level
    tie_word_embeddings decides the tie (HF ties when it is omitted, whatever text_config says)."""

    def __init__(self, config: InternVLConfig):
        super().__init__(config, InternVLModel(config), config.text_config.hidden_size, config.text_config.vocab_size)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.language_model.embed_tokens
