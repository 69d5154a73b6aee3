"""Our Wan DiT equals diffusers' WanTransformer3DModel on the tiny fp32 config, with every parameter
(modulation tables, norms and the output projection included) moved away from its init: the output
and every gradient, for a timestep per sample (Wan2.1, A14B) and per token (Wan2.2 TI2V). The
original Wan checkpoint layout loads to the same weights."""

from __future__ import annotations

import pytest
import torch
from diffusers import WanTransformer3DModel as DiffusersWan
from shardzoo.testing import assert_grads_close
from shardzoo_wan import ADAPTER, WanConfig, WanTransformer3DModel, tiny_config
from shardzoo_wan.modeling_wan import rope_tables


def models(config: WanConfig):
    torch.manual_seed(0)
    ref = DiffusersWan(**{k: v for k, v in vars(config).items() if k != "tie_word_embeddings"}).float()
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
    ours = WanTransformer3DModel(config)
    ours.load_state_dict(dict(ADAPTER.from_hf(ref.state_dict().items(), config)))
    return ref, ours


def inputs(per_token: bool, text_len: int = 8):
    gen = torch.Generator().manual_seed(1)
    latents = torch.randn(2, 4, 3, 8, 8, generator=gen)  # F=3 > 1: the temporal rope axis varies
    text = torch.randn(2, text_len, 16, generator=gen)
    t = torch.rand(2, 3 * 4 * 4, generator=gen) * 1000 if per_token else torch.tensor([999.0, 137.0])
    return latents, t, text


# Wan2.1 I2V at tiny size: CLIP tokens of width 20 (1280 released), the added k/v from the DiT's width.
I2V = dict(image_dim=20, added_kv_proj_dim=24)


def test_i2v_output_and_grads_match_diffusers():
    """Wan2.1 I2V: the image embedder and the cross-attention's second attention over the image tokens.
    diffusers splits its context as [image tokens, last 512 = text]: the text is 512 tokens here."""
    config = tiny_config(**I2V)
    ref, ours = models(config)
    latents, t, text = inputs(False, text_len=512)
    image = torch.randn(2, 5, 20, generator=torch.Generator().manual_seed(3))
    want = ref(latents, t, text, encoder_hidden_states_image=image).sample
    got = ours(latents, t, text, image)
    # fp32 with the same op order: measured bit-identical, as T2V; the same bound for other CPU kernels.
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    probe = torch.randn(want.shape, generator=torch.Generator().manual_seed(2))
    (want * probe).sum().backward()
    (got * probe).sum().backward()
    assert assert_grads_close(ours, ref, atol=1e-5, rtol=1e-5) == len(list(ref.parameters()))


@pytest.mark.parametrize("per_token", [False, True], ids=["t-per-sample", "t-per-token"])
def test_output_and_grads_match_diffusers(per_token):
    config = tiny_config()
    ref, ours = models(config)
    latents, t, text = inputs(per_token)
    want = ref(latents, t, text).sample
    got = ours(latents, t, text)
    # fp32 with the same op order (SDPA on both sides): measured bit-identical; the bound allows
    # for other CPU kernels' summation order.
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    probe = torch.randn(want.shape, generator=torch.Generator().manual_seed(2))
    (want * probe).sum().backward()
    (got * probe).sum().backward()
    checked = assert_grads_close(ours, ref, atol=1e-5, rtol=1e-5)
    assert checked == len(list(ref.parameters()))


def test_qk_norm_rounds_as_diffusers_in_bf16():
    """diffusers' q/k norms are torch.nn.RMSNorm: in bf16 the weight multiplies in fp32 before the last
    rounding. Ours does the same (bit-equal); Qwen3's order (round, then scale) differs in ~27% of the values."""
    ours = WanTransformer3DModel(tiny_config()).blocks[0].attn1.norm_q.bfloat16()
    theirs = torch.nn.RMSNorm(24, eps=1e-6).bfloat16()
    with torch.no_grad():
        theirs.weight.copy_(1 + 0.3 * torch.randn(24))
        ours.weight.copy_(theirs.weight)
    x = torch.randn(4, 64, 24).bfloat16()
    assert torch.equal(ours(x), theirs(x))


def test_rope_split_and_interleaved_pairs():
    cos, sin = rope_tables(128, (2, 3, 4))
    assert cos.shape == (1, 24, 128)
    # t / h / w parts of 44 / 42 / 42 dims: token (f, h, w) = (1, 0, 0) differs from (0, 0, 0) in the
    # first 44 only; each angle fills an adjacent pair (interleaved, not half-split).
    first, next_frame = cos[0, 0], cos[0, 12]
    assert not torch.equal(first[:44], next_frame[:44]) and torch.equal(first[44:], next_frame[44:])
    assert torch.equal(cos[..., 0::2], cos[..., 1::2]) and torch.equal(sin[..., 0::2], sin[..., 1::2])


def _original_keys(diffusers_state: dict) -> dict:
    """diffusers -> original Wan names, written out by hand (model_facts §6)."""
    out = {}
    for key, value in diffusers_state.items():
        k = key
        for a, b in (("attn2.add_k_proj", "cross_attn.k_img"), ("attn2.add_v_proj", "cross_attn.v_img"),
                     ("attn2.norm_added_k", "cross_attn.norm_k_img"),
                     ("condition_embedder.image_embedder.norm1", "img_emb.proj.0"),
                     ("condition_embedder.image_embedder.ff.net.0.proj", "img_emb.proj.1"),
                     ("condition_embedder.image_embedder.ff.net.2", "img_emb.proj.3"),
                     ("condition_embedder.image_embedder.norm2", "img_emb.proj.4")):
            k = k.replace(a, b)
        for a, b in (("condition_embedder.time_embedder.linear_1", "time_embedding.0"),
                     ("condition_embedder.time_embedder.linear_2", "time_embedding.2"),
                     ("condition_embedder.time_proj", "time_projection.1"),
                     ("condition_embedder.text_embedder.linear_1", "text_embedding.0"),
                     ("condition_embedder.text_embedder.linear_2", "text_embedding.2"),
                     ("attn1.to_out.0", "self_attn.o"), ("attn2.to_out.0", "cross_attn.o"),
                     ("attn1.to_", "self_attn."), ("attn2.to_", "cross_attn."), ("attn1.", "self_attn."),
                     ("attn2.", "cross_attn."), (".norm2.", ".norm3."), ("ffn.net.0.proj", "ffn.0"),
                     ("ffn.net.2", "ffn.2"), ("proj_out", "head.head")):
            k = k.replace(a, b)
        if k.endswith("scale_shift_table"):
            k = "head.modulation" if k == "scale_shift_table" else k.replace("scale_shift_table", "modulation")
        out[k] = value
    return out


@pytest.mark.parametrize("variant", [{}, I2V], ids=["t2v", "i2v"])
def test_original_layout_loads_the_same_weights(variant):
    config = tiny_config(**variant)
    ref, _ = models(config)
    state = ref.state_dict()
    original = _original_keys(state)
    assert "blocks.0.norm3.weight" in original and "blocks.0.self_attn.q.weight" in original
    loaded = dict(ADAPTER.from_hf(original.items(), config))
    assert sorted(loaded) == sorted(state)
    for key, value in state.items():
        assert torch.equal(loaded[key], value), key
    assert sorted(k for k, _ in ADAPTER.to_hf(loaded.items(), config)) == sorted(state)  # exports: diffusers


def test_rope_tables_are_made_once_per_size_and_serve_training_after_inference():
    """The tables are kept per video size and device; the first made under inference mode (a sampler's
    call) must still be usable by autograd in a training step that follows."""
    model = WanTransformer3DModel(tiny_config())
    x, t, text = torch.randn(1, 4, 3, 6, 10), torch.tensor([500.0]), torch.randn(1, 5, 16)
    rope_tables.cache_clear()
    with torch.inference_mode():
        model(x, t, text)
    model(x, t, text).sum().backward()
    assert rope_tables.cache_info().hits == 1 and rope_tables.cache_info().misses == 1
    assert all(p.grad is not None for p in model.parameters())
