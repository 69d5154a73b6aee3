"""Converter ops: each one round-trips exactly and means what it says (checked on the math, not only the keys)."""

from types import SimpleNamespace

import pytest
import torch
from shardzoo.checkpoint import (
    Concat,
    FusedQKV,
    ImportOnly,
    Interleave,
    Rename,
    RenamePrefix,
    Split,
    Stack,
    StateDictAdapter,
    Transpose,
)

CFG = SimpleNamespace(num_attention_heads=8, num_key_value_heads=2, head_dim=4, num_experts=3,
                      tie_word_embeddings=False, hidden=6, inter=5)
HEADS = lambda c: (c.num_attention_heads, c.num_key_value_heads, c.head_dim)  # noqa: E731


def rand(*shape):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(sum(shape) + len(shape)))


def hf_layer(i: int) -> dict[str, torch.Tensor]:
    h, d = CFG.hidden, CFG.head_dim
    sd = {f"layers.{i}.q.weight": rand(CFG.num_attention_heads * d, h), f"layers.{i}.q.bias": rand(32),
          f"layers.{i}.k.weight": rand(CFG.num_key_value_heads * d, h), f"layers.{i}.k.bias": rand(8),
          f"layers.{i}.v.weight": rand(CFG.num_key_value_heads * d, h) + 1, f"layers.{i}.v.bias": rand(8) + 1,
          f"layers.{i}.gate.weight": rand(CFG.inter, h), f"layers.{i}.up.weight": rand(CFG.inter, h) + 2,
          f"layers.{i}.fused_in.weight": rand(2 * CFG.inter, h) + 3,
          f"layers.{i}.proj.weight": rand(h, 7), f"layers.{i}.gate_up.weight": rand(3, h, 2 * CFG.inter)}
    for e in range(CFG.num_experts):
        sd[f"layers.{i}.experts.{e}.w1"] = rand(CFG.inter, h) + e
    return sd


ADAPTER = StateDictAdapter(ops=(
    Rename("layers.{i}.proj.weight", "blocks.{i}.proj_t.weight"),
    Transpose("blocks.{i}.proj_t.weight", "blocks.{i}.proj.weight"),
    FusedQKV("layers.{i}.q.{p}", "layers.{i}.k.{p}", "layers.{i}.v.{p}", "blocks.{i}.qkv.{p}", heads=HEADS),
    Concat(("layers.{i}.gate.weight", "layers.{i}.up.weight"), "blocks.{i}.gate_up.weight"),
    Split("layers.{i}.fused_in.weight", ("blocks.{i}.in_a.weight", "blocks.{i}.in_b.weight")),
    Interleave("layers.{i}.gate_up.weight", "blocks.{i}.experts_gate_up", dim=-1),
    Stack("layers.{i}.experts.{expert}.w1", "blocks.{i}.experts_w1", count=lambda c: c.num_experts),
))


def test_every_op_round_trips_exactly():
    hf = {**hf_layer(0), **hf_layer(1), "embed.weight": rand(11, CFG.hidden)}
    ours = dict(ADAPTER.from_hf(hf.items(), CFG))
    assert "embed.weight" in ours  # keys no op matches pass through unchanged
    assert not any(k.startswith("layers.") for k in ours), sorted(ours)
    back = dict(ADAPTER.to_hf(ours.items(), CFG))
    assert sorted(back) == sorted(hf)
    for key, tensor in hf.items():
        assert torch.equal(back[key], tensor), key
        assert back[key].is_contiguous()


def test_ops_mean_the_math():
    hf = hf_layer(0)
    ours = dict(ADAPTER.from_hf(hf.items(), CFG))
    x = rand(2, CFG.hidden)
    # Transpose: ours is the nn.Linear [out, in] form of HF's [in, out] matrix.
    torch.testing.assert_close(ours["blocks.0.proj.weight"], hf["layers.0.proj.weight"].T)
    # Concat of gate and up: one matmul gives both.
    gate, up = (x @ ours["blocks.0.gate_up.weight"].T).chunk(2, dim=-1)
    torch.testing.assert_close(gate, x @ hf["layers.0.gate.weight"].T)
    torch.testing.assert_close(up, x @ hf["layers.0.up.weight"].T)
    # Split: the halves of the fused HF tensor.
    torch.testing.assert_close(ours["blocks.0.in_b.weight"], hf["layers.0.fused_in.weight"][CFG.inter:])
    # Fused QKV per KV group: group g holds its 4 query heads, then k_g, then v_g.
    qkv = (x @ ours["blocks.0.qkv.weight"].T + ours["blocks.0.qkv.bias"]).view(2, CFG.num_key_value_heads, 6, 4)
    q = x @ hf["layers.0.q.weight"].T + hf["layers.0.q.bias"]
    k = x @ hf["layers.0.k.weight"].T + hf["layers.0.k.bias"]
    v = x @ hf["layers.0.v.weight"].T + hf["layers.0.v.bias"]
    torch.testing.assert_close(qkv[:, :, :4].reshape(2, -1), q)
    torch.testing.assert_close(qkv[:, :, 4], k.view(2, 2, 4))
    torch.testing.assert_close(qkv[:, :, 5], v.view(2, 2, 4))
    # Interleave: HF's even columns are the gate, odd the up; ours has them as two blocks.
    g_hf = hf["layers.0.gate_up.weight"]
    torch.testing.assert_close(ours["blocks.0.experts_gate_up"][..., :CFG.inter], g_hf[..., ::2])
    torch.testing.assert_close(ours["blocks.0.experts_gate_up"][..., CFG.inter:], g_hf[..., 1::2])
    # Stack: expert e is slice e.
    for e in range(CFG.num_experts):
        torch.testing.assert_close(ours["blocks.0.experts_w1"][e], hf[f"layers.0.experts.{e}.w1"])


def test_incomplete_group_is_an_error_naming_the_keys():
    hf = hf_layer(0)
    del hf["layers.0.up.weight"], hf["layers.0.experts.2.w1"]
    with pytest.raises(KeyError, match=r"layers\.0\.gate\.weight"):
        dict(ADAPTER.from_hf(hf.items(), CFG))
    stack_only = StateDictAdapter(ops=(Stack("e.{expert}.w", "w", count=lambda c: 3),))
    with pytest.raises(KeyError, match=r"e\.0\.w.*e\.1\.w"):
        dict(stack_only.from_hf([("e.0.w", rand(2)), ("e.1.w", rand(2))], CFG))
    with pytest.raises(KeyError, match="outside 0..2"):
        dict(stack_only.from_hf([("e.5.w", rand(2))], CFG))


def test_skip_and_tied_skip_apply_both_ways():
    adapter = StateDictAdapter(skip=(r".*\.rotary_emb\.inv_freq",), tied_skip=("lm_head.weight",))
    items = [("a.rotary_emb.inv_freq", rand(2)), ("lm_head.weight", rand(3)), ("embed.weight", rand(3))]
    tied = SimpleNamespace(tie_word_embeddings=True)
    assert [k for k, _ in adapter.from_hf(items, tied)] == ["embed.weight"]
    assert [k for k, _ in adapter.from_hf(items, CFG)] == ["lm_head.weight", "embed.weight"]
    assert [k for k, _ in adapter.to_hf([("lm_head.weight", rand(3)), ("embed.weight", rand(3))], tied)] == \
        ["embed.weight"]


def test_placeholders_must_agree():
    with pytest.raises(ValueError, match="same placeholders"):
        list(Rename("a.{i}.w", "b.w").from_hf([("a.1.w", rand(1))], CFG))


def test_rename_prefix_moves_a_subtree_both_ways():
    op = RenamePrefix("language_model.model.", "model.language_model.")
    items = [("language_model.model.layers.0.w", rand(2)), ("language_model.modelx.w", rand(3)), ("lm_head.w", rand(4))]
    ours = list(op.from_hf(items, CFG))
    assert [k for k, _ in ours] == ["model.language_model.layers.0.w", "language_model.modelx.w", "lm_head.w"]
    assert all(a is b for (_, a), (_, b) in zip(ours, items))
    assert [k for k, _ in op.to_hf(ours, CFG)] == [k for k, _ in items]


def test_import_only_reads_an_old_layout_and_exports_ours():
    adapter = StateDictAdapter(ops=(ImportOnly((Split("old.{i}.qkv", ["new.{i}.q", "new.{i}.k", "new.{i}.v"]),
                                                Rename("old.{i}.proj", "new.{i}.o"))),))
    qkv = rand(6, 2)
    ours = dict(adapter.from_hf([("old.0.qkv", qkv), ("old.0.proj", rand(2, 2)), ("new.1.o", rand(1))], CFG))
    assert sorted(ours) == ["new.0.k", "new.0.o", "new.0.q", "new.0.v", "new.1.o"]
    assert torch.equal(torch.cat([ours["new.0.q"], ours["new.0.k"], ours["new.0.v"]]), qkv)
    # Already in our layout: passes through; export never writes the old layout back.
    assert sorted(k for k, _ in adapter.to_hf(ours.items(), CFG)) == sorted(ours)
