"""Registration of the InternVL package: what core needs to build, shard, load and measure it."""

from __future__ import annotations

import torch
from shardzoo.checkpoint import ImportOnly, Rename, RenamePrefix, Split, StateDictAdapter
from shardzoo.modeling import decoder_tp_plan
from shardzoo.registry import ModelSpec, ParallelPlan
from shardzoo_qwen3.spec import QWEN3_HEAD_NORMS
from shardzoo_qwen3.spec import flops_per_token as qwen3_flops_per_token
from shardzoo_qwen3.spec import init_fn as qwen3_init_fn
from transformers import InternVLConfig

from .image_processing import InternVLImages
from .modeling_internvl import InternVLForConditionalGeneration

VIT = "model.vision_tower"
LM = "model.language_model."


def init_fn(config: InternVLConfig):
    """The language model as Qwen3's init (prefix model.language_model.); vision and projector as HF:
    normal(0, initializer_range) matrices and conv, ones for norm weights, zero biases, zero CLS and
    position embeddings, layer scales at layer_scale_init_value."""
    text = qwen3_init_fn(config.text_config)
    std, scale = config.vision_config.initializer_range, config.vision_config.layer_scale_init_value

    def init(name: str, shape: torch.Size, gen: torch.Generator) -> torch.Tensor:
        if name.startswith(LM):
            return text("model." + name[len(LM):], shape, gen)
        if name == "lm_head.weight":
            return text(name, shape, gen)
        leaf = name.rsplit(".", 1)[-1]
        if leaf in ("lambda_1", "lambda_2"):
            return torch.full(shape, float(scale))
        if leaf in ("cls_token", "position_embeddings") or leaf == "bias":
            return torch.zeros(shape)
        if len(shape) >= 2:
            return torch.randn(shape, generator=gen) * std
        return torch.ones(shape)  # LayerNorm / RMSNorm weights
    return init


def flops_per_token(config: InternVLConfig, seq_len: int) -> float:
    """The language model's FLOPs per text token (image tokens included, as they pass the LM). The
    vision tower's FLOPs scale with tiles, not tokens, and are not counted: MFU is a lower bound."""
    return qwen3_flops_per_token(config.text_config, seq_len)


def images(config: InternVLConfig, data) -> InternVLImages:
    vision = config.vision_config
    size = vision.image_size if isinstance(vision.image_size, int) else vision.image_size[0]
    return InternVLImages(size, config.image_seq_length, data.max_dynamic_patch, data.use_thumbnail)


def tiny_config(**overrides) -> InternVLConfig:
    """docs/model_facts.md §5's smallest config: 56 px tiles of 14 px patches -> 4x4 patches -> 2x2 = 4
    image tokens per tile; GQA and nH*d != H in the LM; tie_word_embeddings explicit (HF defaults to True)."""
    fields = dict(
        text_config=dict(model_type="qwen3", vocab_size=160, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=16, rope_theta=1e6,
                         tie_word_embeddings=False),
        vision_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                           image_size=56, patch_size=14, attention_bias=True, use_qk_norm=False,
                           norm_type="layer_norm", layer_norm_eps=1e-6, hidden_act="gelu"),
        image_token_id=151, image_seq_length=4, downsample_ratio=0.5, projector_hidden_act="gelu",
        tie_word_embeddings=False)
    fields.update(overrides)
    return InternVLConfig(**fields)


def _original_layout() -> ImportOnly:
    """InternVLChatModel (remote code) keys -> the HF layout (model_facts §5 key map)."""
    old, new = "vision_model.encoder.layers.{i}", f"{VIT}.encoder.layer.{{i}}"
    renames = [("attn.proj.{p}", "attention.projection_layer.{p}"), ("attn.q_norm.weight", "attention.q_norm.weight"),
               ("attn.k_norm.weight", "attention.k_norm.weight"), ("ls1", "lambda_1"), ("ls2", "lambda_2"),
               ("norm1.{p}", "layernorm_before.{p}"), ("norm2.{p}", "layernorm_after.{p}"),
               ("mlp.fc1.{p}", "mlp.fc1.{p}"), ("mlp.fc2.{p}", "mlp.fc2.{p}")]
    return ImportOnly((
        *(Split(f"{old}.attn.qkv.{p}", [f"{new}.attention.{x}_proj.{p}" for x in "qkv"]) for p in ("weight", "bias")),
        *(Rename(f"{old}.{a}", f"{new}.{b}") for a, b in renames),
        Rename("vision_model.embeddings.class_embedding", f"{VIT}.embeddings.cls_token"),
        Rename("vision_model.embeddings.position_embedding", f"{VIT}.embeddings.position_embeddings"),
        Rename("vision_model.embeddings.patch_embedding.{p}", f"{VIT}.embeddings.patch_embeddings.projection.{{p}}"),
        Rename("mlp1.0.{p}", "model.multi_modal_projector.layer_norm.{p}"),
        Rename("mlp1.1.{p}", "model.multi_modal_projector.linear_1.{p}"),
        Rename("mlp1.3.{p}", "model.multi_modal_projector.linear_2.{p}"),
    ))


def _pre_v5_hf_layout() -> ImportOnly:
    """HF-format checkpoints saved before transformers' VLM key refactor (and the original layout's
    language model): language_model.model.* / vision_tower.* / multi_modal_projector.* at the top."""
    return ImportOnly((RenamePrefix("language_model.model.", LM), RenamePrefix("language_model.lm_head.", "lm_head."),
                       RenamePrefix("vision_tower.", f"{VIT}."),
                       RenamePrefix("multi_modal_projector.", "model.multi_modal_projector.")))


# Our names are the HF (v5) names: both older layouts are read, exports are HF format.
ADAPTER = StateDictAdapter(ops=(_original_layout(), _pre_v5_hf_layout()),
                           tied_skip=("lm_head.weight", "language_model.lm_head.weight"))

SPEC = ModelSpec(
    name="internvl",
    config_class=InternVLConfig,
    architectures=("InternVLForConditionalGeneration",),
    model_types=("internvl",),
    build_model=InternVLForConditionalGeneration,
    init_fn=init_fn,
    flops_per_token=flops_per_token,
    tiny_config=tiny_config,
    adapter=ADAPTER,
    images=images,
    plan=ParallelPlan(fsdp_modules=(f"{VIT}.encoder.layer.{{*}}", "model.language_model.layers.{*}"),
                      recompute_modules=(f"{VIT}.encoder.layer.{{*}}", "model.language_model.layers.{*}"),
                      # The language model splits as Qwen3 does; the vision tower and projector stay whole on
                      # each tp rank (a tile's few hundred tokens per layer are cheap next to the language
                      # model's thousands, and a tower split needs tp to divide its heads: InternViT-300M has
                      # 16, 6B has 25, which no tp of 2, 4 or 8 divides). Each tp rank computes the same
                      # tower gradient; FSDP sums it over the data-parallel ranks only.
                      tp=decoder_tp_plan(head_norms=QWEN3_HEAD_NORMS, decoder="model.language_model",
                                         inputs_embeds_entry=True)),
    packed_documents=True,
)
