"""Every backend that can run here against its op's pure-torch reference, forward and backward."""

import pytest
import torch
from shardzoo.config import ConfigError
from shardzoo.ops import OPS, document_ids_from_cu_seqlens, document_ids_from_position_ids, rotary
from shardzoo.ops.attention import attention_reference, attention_sdpa
from shardzoo.ops.linear_cross_entropy import linear_cross_entropy_chunked, linear_cross_entropy_reference
from shardzoo.ops.rms_norm import rms_norm_native, rms_norm_reference
from shardzoo.ops.rotary import rope_cos_sin, rope_inv_freq, rotary_autograd_fn, rotary_reference
from shardzoo.testing.parity import assert_as_precise, assert_parity, run_with_grads

# fp32 tolerances: the backends reorder fp32 reductions (matmul blocking, fused softmax), which
# moves results by a few ulp of values of order 1-10; 1e-5 absolute leaves a margin of ~10x.
FP32 = dict(atol=1e-5, rtol=1e-5)
# bf16 has an 8-bit mantissa: one rounding of an O(1) value is up to 2^-8 = 3.9e-3 relative.
BF16 = dict(atol=1e-2, rtol=1.6e-2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rms_norm_native(dtype):
    """bf16: as near the fp32 result as the reference. The weight's gradient sums rounded products over the
    tokens and can cancel to near zero, where one rounding element by element is no bound (torch 2.11's
    draw has such an element: fp32 -0.106, the reference -0.122, native -0.101)."""
    torch.manual_seed(0)
    x, w = torch.randn(3, 5, 64, dtype=dtype), 1 + 0.1 * torch.randn(64, dtype=dtype)
    if dtype == torch.float32:
        assert_parity(rms_norm_reference, rms_norm_native, (x, w), FP32, eps=1e-6)
    else:
        assert_as_precise(rms_norm_reference, rms_norm_native, (x, w), eps=1e-6)


@pytest.mark.parametrize("x_dtype,weight_dtype,tol", [(torch.float32, torch.float32, FP32),
                                                      (torch.bfloat16, torch.bfloat16, BF16),
                                                      (torch.bfloat16, torch.float32, BF16)])
@pytest.mark.parametrize("weight_in_fp32", [False, True])
def test_rms_norm_autograd_fn(x_dtype, weight_dtype, tol, weight_in_fp32):
    """The reference's forward bit for bit; the gradients of x and the weight within the dtype's rounding
    (its own backward sums in another order); with the weight frozen (its gradient skipped) x's gradient is
    unchanged."""
    from shardzoo.ops.rms_norm import rms_norm_autograd_fn

    torch.manual_seed(0)
    x, w = torch.randn(3, 5, 64, dtype=x_dtype) * 3, (1 + 0.1 * torch.randn(64)).to(weight_dtype)
    kwargs = dict(eps=1e-6, weight_in_fp32=weight_in_fp32)
    assert torch.equal(rms_norm_autograd_fn(x, w, **kwargs), rms_norm_reference(x, w, **kwargs))
    assert_parity(rms_norm_reference, rms_norm_autograd_fn, (x, w), tol, **kwargs)
    _, (grad_x, _) = run_with_grads(rms_norm_autograd_fn, x, w, **kwargs)
    _, (frozen_grad_x,) = run_with_grads(lambda x: rms_norm_autograd_fn(x, w, **kwargs), x)
    assert torch.equal(frozen_grad_x, grad_x)


def test_rms_norm_reference_matches_definition():
    x, w = torch.tensor([[3.0, 4.0]]), torch.tensor([2.0, 0.5])
    rms = ((9 + 16) / 2) ** 0.5
    torch.testing.assert_close(rms_norm_reference(x, w, 0.0), torch.tensor([[2 * 3 / rms, 0.5 * 4 / rms]]))


def attention_cases():
    pos_packed = torch.tensor([[0, 1, 2, 3, 0, 1, 2, 0, 1, 2, 3, 4]])
    return [
        dict(),
        dict(sliding_window=3),
        dict(document_ids=document_ids_from_position_ids(pos_packed)),
        dict(document_ids=document_ids_from_position_ids(pos_packed), sliding_window=2),
    ]


@pytest.mark.parametrize("case", attention_cases())
@pytest.mark.parametrize("hq,hkv", [(4, 4), (4, 2), (6, 1)])
def test_attention_sdpa(case, hq, hkv):
    torch.manual_seed(0)
    b = 1 if "document_ids" in case else 2
    q, k, v = torch.randn(b, 12, hq, 16), torch.randn(b, 12, hkv, 16), torch.randn(b, 12, hkv, 16)
    assert_parity(attention_reference, attention_sdpa, (q, k, v), FP32, **case)


def test_attention_reference_semantics():
    """Explicit checks of the mask rules on the reference itself."""
    torch.manual_seed(0)
    q, k, v = torch.randn(1, 6, 2, 8), torch.randn(1, 6, 1, 8), torch.randn(1, 6, 1, 8)
    out = attention_reference(q, k, v)
    assert torch.allclose(out[0, 0], v[0, 0].expand(2, 8))  # first token sees only itself
    # changing a future key never changes earlier outputs (causality)
    k2 = k.clone()
    k2[0, 5] += 10
    assert torch.equal(attention_reference(q, k2, v)[0, :5], out[0, :5])
    # window 1: each token sees only itself
    torch.testing.assert_close(attention_reference(q, k, v, sliding_window=1), v.expand(1, 6, 2, 8))
    # documents: the first token of the second document sees only itself
    docs = document_ids_from_position_ids(torch.tensor([[0, 1, 2, 0, 1, 2]]))
    torch.testing.assert_close(attention_reference(q, k, v, document_ids=docs)[0, 3], v[0, 3].expand(2, 8))


def test_document_ids_from_cu_seqlens():
    ids = document_ids_from_cu_seqlens(torch.tensor([0, 3, 5, 9]), 9)
    assert ids.tolist() == [[0, 0, 0, 1, 1, 2, 2, 2, 2]]
    assert (document_ids_from_position_ids(torch.tensor([[0, 1, 2, 0, 1, 0, 1, 2, 3]])) - 1).tolist() == ids.tolist()
    with pytest.raises(ValueError, match="covers 9 tokens but the row has 10"):
        document_ids_from_cu_seqlens(torch.tensor([0, 3, 5, 9]), 10)


@pytest.mark.parametrize("mode", ["half", "interleave"])
def test_rotary_is_a_rotation_of_pairs(mode):
    """Against the complex-number form of rope: pair (a, b) at angle p*f becomes (a + ib) e^{i p f}."""
    torch.manual_seed(0)
    d, theta = 16, 1e4
    x = torch.randn(2, 5, 3, d)
    pos = torch.arange(5)[None].expand(2, 5)
    cos, sin = rope_cos_sin(pos, rope_inv_freq(d, theta), torch.float32, mode=mode)
    out = rotary_reference(x, cos, sin, mode=mode)
    if mode == "half":
        pairs = torch.complex(x[..., : d // 2], x[..., d // 2:])
    else:
        pairs = torch.complex(x[..., 0::2], x[..., 1::2])
    angles = pos[..., None, None].float() * rope_inv_freq(d, theta)
    rotated = pairs * torch.polar(torch.ones_like(angles), angles)
    expected = torch.cat([rotated.real, rotated.imag], -1) if mode == "half" else \
        torch.stack([rotated.real, rotated.imag], -1).flatten(-2)
    torch.testing.assert_close(out, expected, **FP32)
    torch.testing.assert_close(out.norm(dim=-1), x.norm(dim=-1), **FP32)  # rotations keep the norm
    torch.testing.assert_close(rotary(x, cos, sin, mode=mode), out)  # the dispatched backend agrees


@pytest.mark.parametrize("mode", ["half", "interleave"])
@pytest.mark.parametrize("dtype,tol", [(torch.float32, FP32), (torch.bfloat16, BF16)])
@pytest.mark.parametrize("tables_grad", [False, True])
def test_rotary_autograd_fn(mode, dtype, tol, tables_grad):
    """Output and the gradient of x (and of the tables, when they ask for one) equal the reference's."""
    torch.manual_seed(0)
    x = torch.randn(2, 5, 3, 16, dtype=dtype)
    cos, sin = rope_cos_sin(torch.arange(5)[None].expand(2, 5), rope_inv_freq(16, 1e4), dtype, mode=mode)
    if tables_grad:
        assert_parity(rotary_reference, rotary_autograd_fn, (x, cos, sin), tol, mode=mode)
    else:
        out_ref, (grad_ref,) = run_with_grads(lambda x: rotary_reference(x, cos, sin, mode=mode), x)
        out, (grad,) = run_with_grads(lambda x: rotary_autograd_fn(x, cos, sin, mode=mode), x)
        torch.testing.assert_close(out, out_ref, **tol)
        torch.testing.assert_close(grad, grad_ref, **tol)


@pytest.mark.parametrize("x_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("layout", ["contiguous", "heads_first", "odd_offset"])
def test_interleave_rotary_as_complex_multiply_is_bit_equal(x_dtype, layout):
    """Interleave mode with fp32 tables (Wan: queries in fp32 or bf16) takes the complex multiply; its output
    is bit-equal to the reference's on the CPU (the same products and sums), its gradient too in fp32, for
    any layout of x (views are cloned where complex pairs cannot be viewed)."""
    from shardzoo.ops.rotary import _pair_rotary_applies

    torch.manual_seed(0)
    d = 32  # 16 pairs: whole vectors on the CPU
    views = {"contiguous": lambda b: b[:-1].view(2, 5, 3, d),
             "heads_first": lambda b: b[:-1].view(2, 3, 5, d).transpose(1, 2),  # pairs viewable in place
             "odd_offset": lambda b: b[1:].view(2, 5, 3, d)}  # pairs not viewable: cloned
    base, as_x = torch.randn(1 + 2 * 5 * 3 * d, dtype=x_dtype), views[layout]
    positions = torch.arange(5)[None].expand(2, 5)
    cos, sin = rope_cos_sin(positions, rope_inv_freq(d, 1e4), torch.float32, mode="interleave")
    assert _pair_rotary_applies(as_x(base), cos, sin, "interleave")
    out_ref, (grad_ref,) = run_with_grads(lambda b: rotary_reference(as_x(b), cos, sin, mode="interleave"), base)
    out, (grad,) = run_with_grads(lambda b: rotary_autograd_fn(as_x(b), cos, sin, mode="interleave"), base)
    assert out.dtype == out_ref.dtype == torch.float32 and grad.dtype == x_dtype
    assert torch.equal(out, out_ref)
    if x_dtype == torch.float32:
        assert torch.equal(grad, grad_ref)
    else:  # the reference rounds its two gradient terms to bf16 before adding them; this rounds once
        torch.testing.assert_close(grad, grad_ref, **BF16)


def test_interleave_rotary_keeps_the_real_form_where_rows_have_a_remainder():
    """Rows of 6 pairs (the tiny Wan's 12-dim heads) would meet the CPU kernel's fused remainder: measured 1 ulp
    off in 23% of the values, by the element's place in the batch. They stay on the real-valued form, equal to
    the bit wherever the sample sits."""
    from shardzoo.ops.rotary import _pair_rotary_applies

    torch.manual_seed(0)
    x = torch.randn(2, 7, 3, 12)
    cos, sin = rope_cos_sin(torch.arange(7)[None], rope_inv_freq(12, 1e4), torch.float32, mode="interleave")
    assert not _pair_rotary_applies(x, cos, sin, "interleave")
    out = rotary_autograd_fn(x, cos, sin, mode="interleave")
    assert torch.equal(out, rotary_reference(x, cos, sin, mode="interleave"))
    assert torch.equal(rotary_autograd_fn(x.flip(0), cos, sin, mode="interleave"), out.flip(0))


@pytest.mark.parametrize("dtype,tol", [(torch.float32, FP32), (torch.bfloat16, BF16)])
@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
def test_chunked_cross_entropy(dtype, tol, chunk):
    torch.manual_seed(0)
    n, h, v = 50, 32, 97
    hidden, weight = torch.randn(n, h, dtype=dtype), torch.randn(v, h, dtype=dtype) * 0.3
    targets = torch.randint(0, v, (n,))
    targets[::4] = -100
    weights = torch.rand(n) + 0.1
    for normalizer in (None, 123.0):
        for token_weights in (None, weights):
            assert_parity(linear_cross_entropy_reference, linear_cross_entropy_chunked, (hidden, weight, targets),
                          tol, normalizer=normalizer, chunk_size=chunk, token_weights=token_weights)


def test_cross_entropy_normaliser_semantics():
    torch.manual_seed(0)
    hidden, weight, targets = torch.randn(10, 8), torch.randn(20, 8), torch.randint(0, 20, (10,))
    targets[:4] = -100
    mean = linear_cross_entropy_chunked(hidden, weight, targets)
    total = linear_cross_entropy_chunked(hidden, weight, targets, normalizer=1.0)
    torch.testing.assert_close(total / 6, mean)
    ref = torch.nn.functional.cross_entropy(hidden @ weight.t(), targets, ignore_index=-100)
    torch.testing.assert_close(mean, ref, **FP32)
    # Per-token weights: sum of w * CE over sum of w (of the counted tokens).
    w = torch.arange(10, dtype=torch.float32) + 1
    per_token = torch.nn.functional.cross_entropy(hidden @ weight.t(), targets, ignore_index=-100, reduction="none")
    want = (per_token * w).sum() / w[4:].sum()
    torch.testing.assert_close(linear_cross_entropy_chunked(hidden, weight, targets, token_weights=w), want, **FP32)


def test_every_op_has_a_reference_and_explicit_choices_fail_loudly():
    assert {"rms_norm", "rotary", "attention", "swiglu", "linear_cross_entropy"} <= set(OPS)
    for op in OPS.values():
        assert "reference" in op.backends
    with pytest.raises(ConfigError, match="ops.attention: unknown backend 'flash'; choose auto or one of"):
        OPS["attention"].select("cpu", "flash")
    with pytest.raises(ConfigError, match=r"ops.rms_norm=native: cannot run here \(runs on cpu, cuda, not npu\)"):
        OPS["rms_norm"].select("npu", "native")
    assert OPS["attention"].select("cpu").name == "sdpa"
    assert OPS["attention"].select("npu").name == "reference"


def test_the_ops_section_has_one_key_per_registered_op_under_its_python_name():
    import dataclasses

    import shardzoo.ops as ops
    from shardzoo.config import OpsConfig

    assert {f.name for f in dataclasses.fields(OpsConfig)} == set(OPS)
    for name, op in OPS.items():
        assert getattr(ops, name) is op  # `ops.<name>(...)` is the op the `ops.<name>:` key binds
    with pytest.raises(ConfigError, match="ops.flash_attention: no such op; the ops are attention, "):
        ops.bind_ops({"flash_attention": "auto"}, "cpu")


def test_old_spellings_of_moved_keys_are_accepted(minimal_raw):
    from shardzoo.config import config_from_dict

    minimal_raw["ops"] = {"loss_chunk_size": 64, "cross_entropy": "chunked"}
    cfg = config_from_dict(minimal_raw)
    assert cfg.training.loss_chunk_size == 64 and cfg.ops.linear_cross_entropy == "chunked"
    minimal_raw["training"]["loss_chunk_size"] = 128
    with pytest.raises(ConfigError, match=r"ops.loss_chunk_size \(64\) and training.loss_chunk_size \(128\) name the "
                       "same setting"):
        config_from_dict(minimal_raw)
