"""Registration of the Wan package (model_id `wan`): what core needs to build, shard, load, train
and measure the DiT. Training is flow matching on video latents (task.py), not the causal LM."""

from __future__ import annotations

import torch
from shardzoo.checkpoint import ImportOnly, Rename, StateDictAdapter
from shardzoo.parallel.materialize import default_init
from shardzoo.parallel.tensor import TensorParallelPlan
from shardzoo.registry import ModelSpec, ParallelPlan

from .configuration_wan import WanConfig
from .modeling_wan import WanTransformer3DModel
from .task import FlowMatchingTask


def init_fn(config: WanConfig):
    """The original WanModel.init_weights in spirit: normal(0, 0.02) matrices, zero biases, ones for
    norm weights, modulation tables randn/sqrt(D), and a zero output projection (the DiT starts by
    predicting 0)."""
    base = default_init(0.02)
    dim = config.num_attention_heads * config.attention_head_dim

    def init(name: str, shape: torch.Size, gen: torch.Generator) -> torch.Tensor:
        if name.endswith("scale_shift_table"):
            return torch.randn(shape, generator=gen) / dim ** 0.5
        if name.startswith("proj_out."):
            return torch.zeros(shape)
        return base(name, shape, gen)
    return init


def flops_per_token(config: WanConfig, seq_len: int) -> float:
    """6 x matmul parameters per video token (self-attn, cross-attn q/o, ffn, head) + 12 L D T attention;
    the cross-attention k/v over the text (per text token) and the embedders are left out."""
    dim, layers = config.num_attention_heads * config.attention_head_dim, config.num_layers
    per_layer = 4 * dim * dim + 2 * dim * dim + 2 * dim * config.ffn_dim
    return 6 * layers * per_layer + 12 * layers * dim * seq_len


def activation_bytes(cfg, config: WanConfig, recompute: bool) -> int:
    """`shardzoo plan`'s estimate per rank for one micro-batch of the run's latents (the extracted
    features', or the VAE's for task.num_frames x height x width), tokens / cp:
    every block saves its input; a block's internals (self-attention: modulated input, q, k, v, roped
    q, k, output; cross-attention: normed input, q, output; FFN: modulated input, two ffn_dim
    activations, output = 14 D + 2 F in param_dtype, plus ~3 D of fp32 norm / modulation temporaries;
    under tensor parallel 6 D: the q / k norms over heads split across ranks keep their fp32 inputs too,
    where the one-rank norm keeps only its output) are saved for one block with recompute, for all
    without. Text-side tensors (512 tokens) are left out.
    Tensor parallel: what lives on the residual stream (block inputs, modulated and normed inputs, block
    outputs, the fp32 temporaries) holds tokens / tp; q, k, v and the attention outputs (8 D) and
    the FFN activations hold all tokens of the cp chunk with heads and columns / tp; each block's three
    gathered inputs (3 D) hold all tokens."""
    from shardzoo.parallel.fsdp import to_dtype

    from .task import latent_shape_of

    _, frames, height, width = latent_shape_of(cfg)
    pt, ph, pw = config.patch_size
    tokens = frames // pt * (height // ph) * (width // pw)
    n = cfg.training.per_device_train_batch_size * -(-tokens // cfg.parallel.cp_size)
    width = (to_dtype(cfg.parallel.param_dtype) or torch.float32).itemsize
    dim = config.num_attention_heads * config.attention_head_dim
    tp = cfg.parallel.tp_size
    local = -(-n // tp)
    gathered = 3 * n * dim * width if tp > 1 else 0
    fp32_temporaries = (6 if tp > 1 else 3) * dim * 4
    internals = (local * (6 * dim * width + fp32_temporaries) + n * (8 * dim + 2 * config.ffn_dim) // tp * width
                 + gathered)
    return config.num_layers * local * dim * width + (internals if recompute else config.num_layers * internals)


def tiny_config(**overrides) -> WanConfig:
    """docs/model_facts.md §6's smallest config: head_dim 12 -> rope split 4/4/4."""
    fields = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=4, out_channels=4,
                  text_dim=16, freq_dim=8, ffn_dim=32, num_layers=2, cross_attn_norm=True,
                  qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=32)
    fields.update(overrides)
    return WanConfig(**fields)


def _original_layout() -> ImportOnly:
    """Original Wan (WanModel) keys -> diffusers' (model_facts §6; its norm3 is diffusers' norm2)."""
    block = [("modulation", "scale_shift_table"), ("norm3.{p}", "norm2.{p}"),
             ("ffn.0.{p}", "ffn.net.0.proj.{p}"), ("ffn.2.{p}", "ffn.net.2.{p}")]
    for ours, theirs in (("self_attn", "attn1"), ("cross_attn", "attn2")):
        block += [(f"{ours}.{a}.{{p}}", f"{theirs}.{b}.{{p}}")
                  for a, b in (("q", "to_q"), ("k", "to_k"), ("v", "to_v"), ("o", "to_out.0"))]
        block += [(f"{ours}.norm_{x}.weight", f"{theirs}.norm_{x}.weight") for x in "qk"]
    # Wan2.1 I2V: the cross-attention's image keys and values, and the CLIP embedder (LN, Linear, GELU, Linear, LN).
    block += [("cross_attn.k_img.{p}", "attn2.add_k_proj.{p}"), ("cross_attn.v_img.{p}", "attn2.add_v_proj.{p}"),
              ("cross_attn.norm_k_img.weight", "attn2.norm_added_k.weight")]
    top = [("time_embedding.0.{p}", "condition_embedder.time_embedder.linear_1.{p}"),
           ("time_embedding.2.{p}", "condition_embedder.time_embedder.linear_2.{p}"),
           ("time_projection.1.{p}", "condition_embedder.time_proj.{p}"),
           ("text_embedding.0.{p}", "condition_embedder.text_embedder.linear_1.{p}"),
           ("text_embedding.2.{p}", "condition_embedder.text_embedder.linear_2.{p}"),
           ("head.modulation", "scale_shift_table"), ("head.head.{p}", "proj_out.{p}"),
           ("img_emb.proj.0.{p}", "condition_embedder.image_embedder.norm1.{p}"),
           ("img_emb.proj.1.{p}", "condition_embedder.image_embedder.ff.net.0.proj.{p}"),
           ("img_emb.proj.3.{p}", "condition_embedder.image_embedder.ff.net.2.{p}"),
           ("img_emb.proj.4.{p}", "condition_embedder.image_embedder.norm2.{p}")]
    return ImportOnly((*(Rename(f"blocks.{{i}}.{a}", f"blocks.{{i}}.{b}") for a, b in block),
                       *(Rename(a, b) for a, b in top)))


# Our names are diffusers'; original Wan checkpoints are read on import, exports are diffusers format.
ADAPTER = StateDictAdapter(ops=(_original_layout(),))


BLOCK = "blocks.{*}"
PLAN = ParallelPlan(
    fsdp_modules=("blocks.{*}",),
    recompute_modules=("blocks.{*}",),
    # Ulysses over video tokens: only self-attention exchanges them; cross-attention reads the whole text.
    cp_modules=("blocks.{*}.attn1.core_attention",),
    # Tensor parallel: self/cross-attention split by heads (their q/k norms over all heads sum their
    # statistic over the ranks), the FFN by columns; between the blocks each rank keeps its share of the
    # video tokens (SequenceShard). What runs on those tokens with whole weights (modulation tables, the
    # affine norm, the patch embedding, the time embedding, the output projection) sums its gradient
    # over the ranks; the text (and Wan2.1 I2V's image) embedding computes the same on every rank, and the
    # cross-attention's keys and values over them split by heads like its query.
    tp=TensorParallelPlan(
        colwise=tuple(f"{BLOCK}.attn{i}.to_{p}" for i in (1, 2) for p in "qkv") + (f"{BLOCK}.ffn.net.0.proj",)
        + (f"{BLOCK}.attn2.add_k_proj", f"{BLOCK}.attn2.add_v_proj"),  # Wan2.1 I2V's image keys / values
        rowwise=(f"{BLOCK}.attn1.to_out.0", f"{BLOCK}.attn2.to_out.0", f"{BLOCK}.ffn.net.2"),
        width_norms=tuple(f"{BLOCK}.attn{i}.norm_{p}" for i in (1, 2) for p in "qk") + (f"{BLOCK}.attn2.norm_added_k",),
        block_inputs=(f"{BLOCK}.attn1", f"{BLOCK}.attn2", f"{BLOCK}.ffn"),
        local_params=("", BLOCK, f"{BLOCK}.norm2", "patch_embedding", "condition_embedder.time_embedder.linear_1",
                      "condition_embedder.time_embedder.linear_2", "condition_embedder.time_proj", "proj_out"),
        splits_own_tokens=True, embedding=None, head=None),
    # diffusers' _keep_in_fp32_modules (time_embedder, scale_shift_table, norm1/2/3: the non-affine norms
    # have no parameters, and rope none here): fp32 under a bf16 param_dtype.
    fp32_modules=("condition_embedder.time_embedder", f"{BLOCK}.norm2", f"{BLOCK}.scale_shift_table",
                  "scale_shift_table", "condition_embedder.image_embedder.norm{1,2}"),
)

SPEC = ModelSpec(
    name="wan",
    config_class=WanConfig,
    architectures=("WanTransformer3DModel", "WanModel"),  # diffusers' and the original config's _class_name
    model_types=(),
    build_model=WanTransformer3DModel,
    init_fn=init_fn,
    flops_per_token=flops_per_token,
    tiny_config=tiny_config,
    adapter=ADAPTER,
    plan=PLAN,
    task=FlowMatchingTask,
    config_from_dict=WanConfig.from_dict,
    activation_bytes=activation_bytes,
)
