"""Our InternVL equals transformers' InternVLForConditionalGeneration on tiny fp32 configs (both
InternViT styles, tied and untied heads): logits and every gradient, with several tiles and
images spliced in order. Also: the pixel shuffle's channel order, and both older checkpoint
layouts (the original InternVLChatModel keys, pre-v5 HF keys) load to the same weights."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from shardzoo.parallel.materialize import load_parameters
from shardzoo.testing import assert_grads_close
from shardzoo_internvl import SPEC, InternVLForConditionalGeneration, pixel_shuffle, tiny_config
from transformers import InternVLForConditionalGeneration as HFInternVL

VIT_6B_STYLE = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, image_size=56,
                    patch_size=14, attention_bias=False, use_qk_norm=True, norm_type="rms_norm", layer_norm_eps=1e-6,
                    hidden_act="gelu")
VARIANTS = {"vit300m-untied": {}, "vit6b-style": {"vision_config": VIT_6B_STYLE},
            "tied": {"tie_word_embeddings": True}}


def hf_model(config) -> HFInternVL:
    config._attn_implementation = "eager"
    config.text_config._attn_implementation = "eager"
    config.vision_config._attn_implementation = "eager"
    torch.manual_seed(0)
    model = HFInternVL(config).float()
    # HF's init leaves CLS, positions and layer scales constant: randomise everything so each weight
    # reaches the output with its own value.
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.1)
    return model


def ours_from(ref: HFInternVL, config) -> InternVLForConditionalGeneration:
    ours = InternVLForConditionalGeneration(config)
    load_parameters(ours, SPEC.adapter.from_hf(ref.state_dict().items(), config), "the HF model")
    return ours


def batch(config):
    """Row 0: an image of 2 tiles then text; row 1: text, an image of 1 tile, text (image tokens = 4 per tile)."""
    gen = torch.Generator().manual_seed(1)
    img, n = config.image_token_id, config.image_seq_length
    ids = torch.randint(0, 150, (2, 20), generator=gen)
    ids[0, 1:1 + 2 * n] = img
    ids[1, 5:5 + n] = img
    pixels = torch.randn(3, 3, 56, 56, generator=gen)
    return ids, pixels


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_logits_and_grads_match_transformers(variant):
    config = tiny_config(**VARIANTS[variant])
    ref = hf_model(config)
    ours = ours_from(ref, config)
    ids, pixels = batch(config)
    want = ref(input_ids=ids, pixel_values=pixels).logits
    got = ours(ids, pixel_values=pixels)
    # fp32, same op order except the attention kernel (SDPA vs eager matmul+softmax): measured 1e-7.
    torch.testing.assert_close(got, want, atol=2e-5, rtol=2e-5)
    probe = torch.randn(want.shape, generator=torch.Generator().manual_seed(2))
    (want * probe).sum().backward()
    (got * probe).sum().backward()
    checked = assert_grads_close(ours, ref, atol=2e-5, rtol=2e-5)
    assert checked == len([p for p in ref.parameters() if p.grad is not None])


def test_image_token_count_must_match_the_tiles():
    config = tiny_config()
    ours = ours_from(hf_model(config), config)
    ids, pixels = batch(config)
    with pytest.raises(ValueError, match=r"12 image tokens .* but 2 tiles x 4 features"):
        ours(ids, pixel_values=pixels[:2])
    with pytest.raises(ValueError, match="image tokens in the batch but no pixel_values"):
        ours(ids)


def test_pixel_shuffle_channel_order():
    x = torch.randn(2, 4, 4, 3)
    out = pixel_shuffle(x, 0.5)
    assert out.shape == (2, 2, 2, 12)
    for i in range(2):
        for j in range(2):
            want = torch.cat([x[:, 2 * i, 2 * j], x[:, 2 * i, 2 * j + 1], x[:, 2 * i + 1, 2 * j],
                              x[:, 2 * i + 1, 2 * j + 1]], dim=-1)
            torch.testing.assert_close(out[:, i, j], want, rtol=0, atol=0)
    unshuffled = F.pixel_unshuffle(x.permute(0, 3, 1, 2), 2).permute(0, 2, 3, 1)
    assert not torch.equal(unshuffled, out)  # (c, dy, dx) is another channel order


def _original_layout(hf: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The InternVLChatModel key names of an HF state dict, written out by hand (model_facts §5)."""
    out = {}
    for key, t in hf.items():
        if key.startswith("model.language_model."):
            out["language_model.model." + key[len("model.language_model."):]] = t
        elif key == "lm_head.weight":
            out["language_model.lm_head.weight"] = t
        elif key.startswith("model.multi_modal_projector."):
            part = key.split(".")[2]
            index = {"layer_norm": 0, "linear_1": 1, "linear_2": 3}[part]
            out[f"mlp1.{index}.{key.split('.')[-1]}"] = t
        elif ".attention.k_proj." in key or ".attention.v_proj." in key:
            continue  # fused into qkv below
        elif ".attention.q_proj." in key:
            layer, param = key.split(".")[4], key.split(".")[-1]
            parts = [hf[key.replace("q_proj", x)] for x in ("q_proj", "k_proj", "v_proj")]
            out[f"vision_model.encoder.layers.{layer}.attn.qkv.{param}"] = torch.cat(parts)
        else:
            k = key.replace("model.vision_tower.", "vision_model.").replace("encoder.layer.", "encoder.layers.")
            for a, b in (("embeddings.cls_token", "embeddings.class_embedding"),
                         ("embeddings.position_embeddings", "embeddings.position_embedding"),
                         ("patch_embeddings.projection", "patch_embedding"),
                         ("attention.projection_layer", "attn.proj"),
                         ("attention.q_norm", "attn.q_norm"), ("attention.k_norm", "attn.k_norm"),
                         ("lambda_1", "ls1"), ("lambda_2", "ls2"), ("layernorm_before", "norm1"),
                         ("layernorm_after", "norm2")):
                k = k.replace(a, b)
            out[k] = t
    return out


@pytest.mark.parametrize("variant", ["vit300m-untied", "vit6b-style"])
@pytest.mark.parametrize("layout", ["original", "pre-v5-hf"])
def test_older_checkpoint_layouts_load_the_same_weights(variant, layout):
    config = tiny_config(**VARIANTS[variant])
    hf = hf_model(config).state_dict()
    if layout == "original":
        old = _original_layout(hf)
        assert not any(k.startswith("model.") for k in old) and any(".attn.qkv." in k for k in old)
    else:
        moves = (("model.language_model.", "language_model.model."), ("lm_head.", "language_model.lm_head."),
                 ("model.vision_tower.", "vision_tower."), ("model.multi_modal_projector.", "multi_modal_projector."))
        old = {}
        for key, tensor in hf.items():
            for a, b in moves:
                key = b + key[len(a):] if key.startswith(a) else key
            old[key] = tensor
    loaded = dict(SPEC.adapter.from_hf(old.items(), config))
    assert sorted(loaded) == sorted(hf)
    for key, tensor in hf.items():
        assert torch.equal(loaded[key], tensor), key
    # Exports are HF format whatever was read.
    assert dict(SPEC.adapter.to_hf(loaded.items(), config)).keys() == hf.keys()
