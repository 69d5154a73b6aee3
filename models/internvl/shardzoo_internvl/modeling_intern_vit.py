"""InternViT, the InternVL vision encoder (transformers `InternVLVisionModel`), rewritten on shardzoo ops.

Parameter names equal the HF-format checkpoint's (`model.vision_tower.*`). Numerics follow
docs/model_facts.md §5:

    x = conv14x14(pixels) (+bias), flattened row-major; x = [cls; x] + pos   (pos bicubic-resized
                                                                             when the grid differs)
    per layer:  x = x + lambda_1 * proj(attention(q, k, v))     q, k, v = Wq/k/v norm_before(x) (+b)
                                                               (6B variant: RMSNorm of q and k over
                                                                the whole width, not per head)
                x = x + lambda_2 * fc2(gelu(fc1(norm_after(x))))
    no final norm (HF's layernorm is Identity with use_mean_pooling)

The 300M variant uses LayerNorm (eps 1e-6) and q/k/v biases; the 6B variant RMSNorm, q/k norm,
no q/k/v bias. Attention is full (not causal), every head its own k/v.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from shardzoo import ops
from shardzoo.errors import ConfigError


def _pair(value) -> tuple[int, int]:
    return tuple(value) if isinstance(value, (list, tuple)) else (value, value)


def make_norm(config, dim: int) -> nn.Module:
    if config.norm_type == "layer_norm":
        return nn.LayerNorm(dim, eps=config.layer_norm_eps)
    if config.norm_type == "rms_norm":
        return ops.RMSNorm(dim, config.layer_norm_eps)
    raise ConfigError(f"InternViT norm_type {config.norm_type!r}: only layer_norm and rms_norm exist")


class InternVisionPatchEmbeddings(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.projection = nn.Conv2d(config.num_channels, config.hidden_size, kernel_size=_pair(config.patch_size),
                                    stride=_pair(config.patch_size))

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.projection(pixel_values.to(self.projection.weight.dtype)).flatten(2).transpose(1, 2)


class InternVisionEmbeddings(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.patch_size = _pair(config.patch_size)
        image = _pair(config.image_size)
        self.grid = (image[0] // self.patch_size[0], image[1] // self.patch_size[1])
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.patch_embeddings = InternVisionPatchEmbeddings(config)
        self.position_embeddings = nn.Parameter(torch.zeros(1, self.grid[0] * self.grid[1] + 1, config.hidden_size))

    def positions(self, height: int, width: int) -> torch.Tensor:
        grid = (height // self.patch_size[0], width // self.patch_size[1])
        if grid == self.grid:
            return self.position_embeddings
        cls_pos, patch_pos = self.position_embeddings[:, :1], self.position_embeddings[:, 1:]
        dim = patch_pos.shape[-1]
        patch_pos = patch_pos.reshape(1, *self.grid, dim).permute(0, 3, 1, 2)
        patch_pos = F.interpolate(patch_pos, size=grid, mode="bicubic", align_corners=False)
        return torch.cat([cls_pos, patch_pos.permute(0, 2, 3, 1).reshape(1, -1, dim)], dim=1)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = self.patch_embeddings(pixel_values)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return x + self.positions(*pixel_values.shape[-2:])


class InternVisionAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        width, self.num_heads = config.hidden_size, config.num_attention_heads
        if width % self.num_heads:
            raise ValueError(f"InternViT hidden_size {width} does not divide into {self.num_heads} heads")
        self.head_dim = width // self.num_heads
        self.q_proj = nn.Linear(width, width, bias=config.attention_bias)
        self.k_proj = nn.Linear(width, width, bias=config.attention_bias)
        self.v_proj = nn.Linear(width, width, bias=config.attention_bias)
        self.projection_layer = nn.Linear(width, width)
        self.use_qk_norm = config.use_qk_norm
        if self.use_qk_norm:
            self.q_norm = ops.RMSNorm(width, config.layer_norm_eps)  # over the whole width, not per head
            self.k_norm = ops.RMSNorm(width, config.layer_norm_eps)
        self.core_attention = ops.CoreAttention()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        if self.use_qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k, v = (y.view(b, t, self.num_heads, self.head_dim) for y in (q, k, v))
        out = self.core_attention(q, k, v, causal=False, scale=self.head_dim ** -0.5)
        return self.projection_layer(out.reshape(b, t, -1))


class InternVisionMLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        if config.hidden_act != "gelu":
            raise ConfigError(f"InternViT hidden_act {config.hidden_act!r}: only exact gelu is implemented")
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class InternVisionLayer(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.attention = InternVisionAttention(config)
        self.mlp = InternVisionMLP(config)
        self.layernorm_before = make_norm(config, config.hidden_size)
        self.layernorm_after = make_norm(config, config.hidden_size)
        self.lambda_1 = nn.Parameter(torch.full((config.hidden_size,), float(config.layer_scale_init_value)))
        self.lambda_2 = nn.Parameter(torch.full((config.hidden_size,), float(config.layer_scale_init_value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.lambda_1 * self.attention(self.layernorm_before(x))
        return x + self.lambda_2 * self.mlp(self.layernorm_after(x))


class InternVisionEncoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.layer = nn.ModuleList(InternVisionLayer(config) for _ in range(config.num_hidden_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layer:
            x = layer(x)
        return x


class InternVisionModel(nn.Module):
    """pixel_values [tiles, 3, S, S] -> last hidden states [tiles, 1 + (S/patch)^2, C] (CLS first)."""

    def __init__(self, config):
        super().__init__()
        if not config.use_absolute_position_embeddings or config.use_mask_token or not config.use_mean_pooling:
            raise ConfigError("InternViT as InternVL uses it: absolute position embeddings, no mask token, "
                                      "no final norm (use_mean_pooling)")
        self.config = config
        self.embeddings = InternVisionEmbeddings(config)
        self.encoder = InternVisionEncoder(config)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.embeddings(pixel_values))
