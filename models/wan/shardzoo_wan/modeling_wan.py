"""Wan 2.1 / 2.2 video DiT (diffusers `WanTransformer3DModel`), rewritten on shardzoo ops.

Parameter names equal the diffusers checkpoint's; the original Wan layout is converted by the
adapter (spec.py). Numerics follow docs/model_facts.md §6 (diffusers' fp32 choices):

    x = conv3d_(1,2,2)(latents) -> tokens in (f, h, w) order              [B, L, D]
    e = time_embedder(sinusoid(t))  (cos first, t in [0, 1000]);  e0 = time_proj(silu(e)) -> 6 x D
    c = linear_2(gelu_tanh(linear_1(text)))
    per block (shift, scale, gate, c_shift, c_scale, c_gate = table + e0, fp32):
        x = x + gate * self_attn(LN(x) * (1 + scale) + shift)      q, k RMSNorm over all heads, then
                                                                    3-D rope (interleaved pairs, t/h/w)
        x = x + cross_attn(LN_affine(x), c)                         no modulation, no gate
        x = x + c_gate * ffn(LN(x) * (1 + c_scale) + c_shift)      ffn: linear, gelu_tanh, linear
    shift, scale = head table + e     (the time embedding e, not e0)
    out = unpatchify(proj_out(LN(x) * (1 + scale) + shift))

Wan2.1 I2V adds CLIP image tokens: img = LN(ff(LN(clip))) (image_embedder, exact GELU, eps 1e-5),
and each cross-attention adds a second attention of the same q over them with keys and values of
their own (add_k_proj with its RMSNorm over all heads, add_v_proj), summed before the output
projection.

A [B] timestep is one per sample (Wan2.1, Wan2.2 A14B); a [B, L] timestep is one per token
(Wan2.2 TI2V-5B: the clean first frame gets t = 0), and then e0, e and the modulations are per token.
Context parallel: `sequence` marks where the video tokens (with their rope and per-token
modulation) split over the cp ranks and where the head's output is gathered; only self-attention
(blocks.{*}.attn1.core_attention) exchanges tokens.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from shardzoo import ops
from shardzoo.errors import ConfigError
from shardzoo.parallel.context import SequenceShard


def timestep_sinusoid(t: torch.Tensor, dim: int) -> torch.Tensor:
    """[N] timesteps -> [N, dim]: cos(t w), sin(t w), w_i = 10000^(-i / (dim / 2)), in fp32."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([angles.cos(), angles.sin()], dim=-1)


@functools.lru_cache(maxsize=16)
def rope_tables(head_dim: int, grid: tuple[int, int, int], theta: float = 10000.0,
                device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin [1, F*H*W, head_dim] for interleaved pairs: the head dim splits into t / h / w parts of
    d - 4(d//6), 2(d//6), 2(d//6); each axis has its own frequencies (fp64, as the reference). Computed on
    the CPU (fp64 is slow or missing on some accelerators), then moved; kept per video size and device,
    as every step of a run reuses them (read-only: rotary never writes them). Made outside inference mode,
    so tables first made by an inference call still serve training."""
    with torch.inference_mode(False):
        return _rope_tables(head_dim, grid, theta, device)


def _rope_tables(head_dim: int, grid: tuple[int, int, int], theta: float,
                 device: torch.device | None) -> tuple[torch.Tensor, torch.Tensor]:
    hw = 2 * (head_dim // 6)
    angles = []
    for size, n, axis in zip(grid, (head_dim - 2 * hw, hw, hw), range(3)):
        inv_freq = 1.0 / theta ** (torch.arange(0, n, 2, dtype=torch.float64) / n)
        a = torch.arange(size, dtype=torch.float64)[:, None] * inv_freq  # [size, n/2]
        shape = [1, 1, 1, n // 2]
        shape[axis] = size
        angles.append(a.view(shape).expand(*grid, n // 2))
    a = torch.cat(angles, dim=-1).reshape(1, -1, head_dim // 2)
    return tuple(t.repeat_interleave(2, dim=-1).float().to(device) for t in (a.cos(), a.sin()))


def layer_norm_fp32(x: torch.Tensor, eps: float, weight=None, bias=None) -> torch.Tensor:
    """LayerNorm computed in fp32 (Wan keeps its norms and modulation in fp32), returned in fp32."""
    return F.layer_norm(x.float(), (x.shape[-1],), None if weight is None else weight.float(),
                        None if bias is None else bias.float(), eps)


class FP32LayerNorm(nn.LayerNorm):
    """The affine LayerNorm computed in fp32 (diffusers' FP32LayerNorm), returned in fp32."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return layer_norm_fp32(x, self.eps, self.weight, self.bias)


class WanImageEmbedding(nn.Module):
    """CLIP image tokens -> the DiT's width: LN, Linear, exact GELU, Linear, LN (norms eps 1e-5, computed
    in fp32 and returned in the input's dtype, as diffusers' FP32LayerNorm does)."""

    def __init__(self, dim_in: int, dim: int):
        super().__init__()
        self.norm1 = FP32LayerNorm(dim_in, eps=1e-5)
        self.ff = FeedForward(dim_in, dim_in, dim, "none")  # diffusers' FeedForward(mult=1, "gelu")
        self.norm2 = FP32LayerNorm(dim, eps=1e-5)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.ff(self.norm1(image).type_as(image))
        return self.norm2(x).type_as(x)


class MLP(nn.Module):
    """linear_1 -> activation -> linear_2 (diffusers' TimestepEmbedding / PixArtAlphaTextProjection names)."""

    def __init__(self, dim_in: int, dim: int, activation):
        super().__init__()
        self.linear_1 = nn.Linear(dim_in, dim)
        self.linear_2 = nn.Linear(dim, dim)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.activation(self.linear_1(x)))


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


class WanConditionEmbedder(nn.Module):
    def __init__(self, dim: int, freq_dim: int, text_dim: int, image_dim: int | None = None):
        super().__init__()
        self.freq_dim = freq_dim
        self.time_embedder = MLP(freq_dim, dim, F.silu)
        self.time_proj = nn.Linear(dim, 6 * dim)
        self.text_embedder = MLP(text_dim, dim, gelu_tanh)
        self.image_embedder = WanImageEmbedding(image_dim, dim) if image_dim is not None else None


class WanAttention(nn.Module):
    def __init__(self, dim: int, heads: int, eps: float, added_kv_proj_dim: int | None = None):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.to_q, self.to_k, self.to_v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim)])
        # Over all heads (weight [D]), before the head split; diffusers' torch.nn.RMSNorm scales by the weight
        # in fp32 and rounds last (weight_in_fp32), one rounding apart from Qwen3's order in bf16.
        self.norm_q = ops.RMSNorm(dim, eps, weight_in_fp32=True)
        self.norm_k = ops.RMSNorm(dim, eps, weight_in_fp32=True)
        if added_kv_proj_dim is not None:  # Wan2.1 I2V's cross-attention over the image tokens
            self.add_k_proj = nn.Linear(added_kv_proj_dim, dim)
            self.add_v_proj = nn.Linear(added_kv_proj_dim, dim)
            self.norm_added_k = ops.RMSNorm(dim, eps, weight_in_fp32=True)
        self.core_attention = ops.CoreAttention()

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                rope: tuple[torch.Tensor, torch.Tensor] | None = None,
                image: torch.Tensor | None = None) -> torch.Tensor:
        kv = x if context is None else context
        q = self.norm_q(self.to_q(x)).unflatten(2, (-1, self.head_dim))
        k = self.norm_k(self.to_k(kv)).unflatten(2, (-1, self.head_dim))
        v = self.to_v(kv).unflatten(2, (-1, self.head_dim))
        if rope is not None:
            q = ops.rotary(q, *rope, mode="interleave").type_as(v)
            k = ops.rotary(k, *rope, mode="interleave").type_as(v)
        out = self.core_attention(q, k, v, causal=False, scale=self.head_dim ** -0.5).flatten(2).type_as(q)
        if image is not None:
            k_img = self.norm_added_k(self.add_k_proj(image)).unflatten(2, (-1, self.head_dim))
            v_img = self.add_v_proj(image).unflatten(2, (-1, self.head_dim))
            out = out + self.core_attention(q, k_img, v_img, causal=False,
                                            scale=self.head_dim ** -0.5).flatten(2).type_as(q)
        return self.to_out[0](out)


class GeluProjection(nn.Module):
    """Linear, then GELU (`approximate`: "tanh" in the blocks, "none" in the image embedder)."""

    def __init__(self, dim_in: int, dim_out: int, approximate: str):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out)
        self.approximate = approximate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.proj(x), approximate=self.approximate)


class FeedForward(nn.Module):
    def __init__(self, dim_in: int, inner: int, dim_out: int, approximate: str):
        super().__init__()
        # diffusers' FeedForward layout: net.0 (projection + GELU), net.1 (dropout), net.2 (output).
        self.net = nn.ModuleList([GeluProjection(dim_in, inner, approximate), nn.Identity(), nn.Linear(inner, dim_out)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net[2](self.net[0](x))


class WanTransformerBlock(nn.Module):
    def __init__(self, dim: int, ffn_dim: int, heads: int, eps: float, cross_attn_norm: bool,
                 added_kv_proj_dim: int | None = None):
        super().__init__()
        self.eps = eps
        self.attn1 = WanAttention(dim, heads, eps)
        self.attn2 = WanAttention(dim, heads, eps, added_kv_proj_dim)
        self.norm2 = FP32LayerNorm(dim, eps=eps) if cross_attn_norm else None  # the affine one, before cross-attn
        self.ffn = FeedForward(dim, ffn_dim, dim, "tanh")
        self.scale_shift_table = nn.Parameter(torch.randn(1, 6, dim) / dim ** 0.5)

    def forward(self, x: torch.Tensor, context: torch.Tensor, e0: torch.Tensor,
                rope: tuple[torch.Tensor, torch.Tensor], image: torch.Tensor | None = None) -> torch.Tensor:
        # e0 [B, 6, D] (per sample) or [B, L, 6, D] (per token): modulations [B, 1 or L, D] in fp32.
        table = self.scale_shift_table if e0.ndim == 3 else self.scale_shift_table.unsqueeze(0)
        mods = (table + e0.float()).unbind(-2)
        shift, scale, gate, c_shift, c_scale, c_gate = (m if e0.ndim == 4 else m[:, None] for m in mods)
        y = self.attn1((layer_norm_fp32(x, self.eps) * (1 + scale) + shift).type_as(x), rope=rope)
        x = (x.float() + y * gate).type_as(x)
        normed = x if self.norm2 is None else self.norm2(x)
        x = x + self.attn2(normed.type_as(x), context=context, image=image)
        y = self.ffn((layer_norm_fp32(x, self.eps) * (1 + c_scale) + c_shift).type_as(x))
        return (x.float() + y.float() * c_gate).type_as(x)


class WanTransformer3DModel(nn.Module):
    """latents [B, C, F, H, W], timestep [B] or [B, L] (0..1000), text [B, L_txt, text_dim], and for Wan2.1
    I2V CLIP image tokens [B, L_img, image_dim] -> [B, C_out, F, H, W]."""

    def __init__(self, config):
        super().__init__()
        c = config
        if (c.image_dim is None) != (c.added_kv_proj_dim is None):
            raise ConfigError(f"Wan config: image_dim ({c.image_dim}) and added_kv_proj_dim ({c.added_kv_proj_dim}) "
                              "come together (Wan2.1 I2V: 1280 and the DiT's width) or not at all")
        if c.pos_embed_seq_len is not None:
            raise ConfigError("Wan config: pos_embed_seq_len (FLF2V's first-last-frame image tokens) is not "
                              "implemented; T2V, I2V and TI2V are")
        if c.qk_norm != "rms_norm_across_heads":
            raise ConfigError(f"Wan qk_norm {c.qk_norm!r}: only rms_norm_across_heads (every release)")
        self.config = config
        dim = c.num_attention_heads * c.attention_head_dim
        self.patch_size = tuple(c.patch_size)
        self.eps = c.eps
        self.patch_embedding = nn.Conv3d(c.in_channels, dim, kernel_size=self.patch_size, stride=self.patch_size)
        self.condition_embedder = WanConditionEmbedder(dim, c.freq_dim, c.text_dim, c.image_dim)
        self.blocks = nn.ModuleList(WanTransformerBlock(dim, c.ffn_dim, c.num_attention_heads, c.eps,
                                                        c.cross_attn_norm, c.added_kv_proj_dim)
                                    for _ in range(c.num_layers))
        self.proj_out = nn.Linear(dim, (c.out_channels or c.in_channels) * math.prod(self.patch_size))
        self.scale_shift_table = nn.Parameter(torch.randn(1, 2, dim) / dim ** 0.5)
        # Ulysses CP over video tokens: each rank keeps a chunk of the (f, h, w) tokens from here to
        # the head (cross-attention reads the whole text on every rank); see parallel/context.py.
        self.sequence = SequenceShard()

    def forward(self, hidden_states: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor,
                encoder_hidden_states_image: torch.Tensor | None = None) -> torch.Tensor:
        b, _, frames, height, width = hidden_states.shape
        pt, ph, pw = self.patch_size
        grid = (frames // pt, height // ph, width // pw)
        cos, sin = rope_tables(self.config.attention_head_dim, grid, device=hidden_states.device)
        rope = (self.sequence.split(cos, inside_attention=True), self.sequence.split(sin, inside_attention=True))
        x = self.sequence.split(self.patch_embedding(hidden_states).flatten(2).transpose(1, 2).contiguous())

        emb = self.condition_embedder
        per_token = timestep.ndim == 2
        sinusoid = timestep_sinusoid(timestep.flatten(), emb.freq_dim)
        if per_token:
            sinusoid = sinusoid.unflatten(0, timestep.shape)
        e = emb.time_embedder(sinusoid.to(emb.time_embedder.linear_1.weight.dtype)).type_as(encoder_hidden_states)
        e0 = emb.time_proj(F.silu(e)).unflatten(-1, (6, -1))
        if per_token:
            e, e0 = self.sequence.split(e), self.sequence.split(e0)
        context = emb.text_embedder(encoder_hidden_states)
        if (encoder_hidden_states_image is None) != (emb.image_embedder is None):
            raise ValueError("image tokens come exactly when the config has image_dim (Wan2.1 I2V)")
        image = None if emb.image_embedder is None else emb.image_embedder(encoder_hidden_states_image)

        for block in self.blocks:
            x = block(x, context, e0, rope, image)

        table = self.scale_shift_table.unsqueeze(0) if per_token else self.scale_shift_table
        shift, scale = (table + e.unsqueeze(-2)).unbind(-2)
        if not per_token:
            shift, scale = shift[:, None], scale[:, None]
        x = (layer_norm_fp32(x, self.eps) * (1 + scale) + shift).type_as(x)
        x = self.sequence.gather(self.proj_out(x))
        x = x.reshape(b, *grid, pt, ph, pw, -1).permute(0, 7, 1, 4, 2, 5, 3, 6)
        return x.flatten(6, 7).flatten(4, 5).flatten(2, 3)
