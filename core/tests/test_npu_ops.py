"""The NPU backends of the dense ops through the fake torch_npu (docs/npu_ops.md §5): each equals
its op's reference, forward and backward, and the fake rejects what the real op rejects. The MoE
backends (grouped matmul, permute) are in test_moe_ops.py. Real NPU validation needs hardware."""

import pytest
import torch
from shardzoo.ops import OPS
from shardzoo.ops.clipped_swiglu import clipped_swiglu_npu, clipped_swiglu_reference
from shardzoo.ops.rms_norm import rms_norm_npu, rms_norm_reference
from shardzoo.ops.rotary import rope_cos_sin, rope_inv_freq, rotary_npu, rotary_reference
from shardzoo.ops.swiglu import swiglu_npu, swiglu_reference
from shardzoo.testing import fake_torch_npu
from shardzoo.testing.parity import assert_as_precise, assert_parity

# fp32: the fake reorders nothing but fuses the scale into one fp32 product; a few ulp.
FP32 = dict(atol=1e-5, rtol=1e-5)
# bf16: one rounding of an O(1) value is up to 2^-8 relative (npu_rms_norm rounds once after the
# weight, the Qwen3 reference once before it).
BF16 = dict(atol=1e-2, rtol=1.6e-2)


@pytest.fixture
def npu(monkeypatch):
    return fake_torch_npu.install(monkeypatch)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("weight_in_fp32", [False, True])
def test_rms_norm_npu(npu, dtype, weight_in_fp32):
    """bf16: as near the fp32 result as the reference (the weight's gradient can cancel; test_ops.py)."""
    torch.manual_seed(0)
    x, w = torch.randn(2, 5, 64, dtype=dtype), 1 + 0.1 * torch.randn(64, dtype=dtype)
    if dtype == torch.float32:
        assert_parity(rms_norm_reference, rms_norm_npu, (x, w), FP32, eps=1e-6, weight_in_fp32=weight_in_fp32)
    else:
        assert_as_precise(rms_norm_reference, rms_norm_npu, (x, w), eps=1e-6, weight_in_fp32=weight_in_fp32)


def test_rms_norm_npu_exact_where_the_rounding_agrees(npu):
    """GPT-OSS scales in fp32 and rounds last, as the NPU op does: equal bit for bit in bf16."""
    torch.manual_seed(0)
    x, w = torch.randn(4, 64, dtype=torch.bfloat16), 1 + 0.1 * torch.randn(64, dtype=torch.bfloat16)
    assert torch.equal(rms_norm_npu(x, w, 1e-5, weight_in_fp32=True), rms_norm_reference(x, w, 1e-5, True))


def test_fake_rms_norm_rejects_what_the_op_rejects(npu):
    x = torch.randn(4, 8)
    with pytest.raises(TypeError, match="unsupported dtypes"):
        npu.npu_rms_norm(x, torch.ones(8, dtype=torch.bfloat16))  # fp32 x with a bf16 gamma
    with pytest.raises(ValueError, match="trailing dims"):
        npu.npu_rms_norm(x, torch.ones(4))
    with pytest.raises(ValueError, match="2 to 8 dims"):
        npu.npu_rms_norm(torch.randn(8), torch.ones(8))
    # The backend casts the weight into an allowed pair instead.
    assert rms_norm_npu(x, torch.ones(8, dtype=torch.bfloat16), 1e-6).dtype == torch.float32


@pytest.mark.parametrize("mode", ["half", "interleave"])
@pytest.mark.parametrize("batch_tables", [1, 2])
@pytest.mark.parametrize("dtype,tol", [(torch.float32, FP32), (torch.bfloat16, BF16)])
def test_rotary_npu(npu, mode, batch_tables, dtype, tol):
    """Per-sample tables (packed rows) and shared ones; interleave with per-sample tables goes one
    sample per call, as the op takes only the 1S1D form there."""
    torch.manual_seed(0)
    x = torch.randn(2, 6, 3, 16, dtype=dtype)
    pos = torch.arange(6)[None].repeat(batch_tables, 1)
    if batch_tables == 2:
        pos[1] = torch.tensor([0, 1, 2, 0, 1, 2])
    cos, sin = rope_cos_sin(pos, rope_inv_freq(16, 1e4), dtype, mode=mode)
    assert_parity(lambda x: rotary_reference(x, cos, sin, mode=mode),
                  lambda x: rotary_npu(x, cos, sin, mode=mode), (x,), tol)


def test_fake_rotary_rejects_what_the_op_rejects(npu):
    x = torch.randn(2, 4, 3, 16)
    cos = torch.ones(2, 4, 1, 16)
    with pytest.raises(ValueError, match="interleave-mode broadcast form"):
        npu.npu_rotary_mul(x, cos, cos, rotary_mode="interleave")
    with pytest.raises(ValueError, match="even D < 896"):
        npu.npu_rotary_mul(torch.randn(1, 4, 3, 15), torch.ones(1, 4, 1, 15), torch.ones(1, 4, 1, 15))
    with pytest.raises(TypeError, match="must share"):
        npu.npu_rotary_mul(x, cos.bfloat16(), cos.bfloat16())
    with pytest.raises(ValueError, match=r"values must lie in \[-1, 1\]"):
        npu.npu_rotary_mul(x, 2 * cos, cos)
    with pytest.raises(ValueError, match="rotary_mode"):
        npu.npu_rotary_mul(x, cos, cos, rotary_mode="neox")


@pytest.mark.parametrize("dtype,tol", [(torch.float32, FP32), (torch.bfloat16, BF16)])
def test_swiglu_npu(npu, dtype, tol):
    torch.manual_seed(0)
    gate, up = torch.randn(3, 5, 32, dtype=dtype), torch.randn(3, 5, 32, dtype=dtype)
    assert_parity(swiglu_reference, swiglu_npu, (gate, up), tol)


def test_fake_swiglu_rejects_what_the_op_rejects(npu):
    with pytest.raises(ValueError, match="odd size"):
        npu.npu_swiglu(torch.randn(4, 7))
    with pytest.raises(ValueError, match="contiguous"):
        npu.npu_swiglu(torch.randn(8, 4).t())


@pytest.mark.parametrize("interleaved", [True, False])
def test_clipped_swiglu_npu_with_its_own_backward(npu, interleaved):
    """The op has no derivative; the backend's autograd recomputes the reference's. Inputs reach past
    the clamp (|x| > 7) so the clipped branches' zero gradients are checked too."""
    torch.manual_seed(0)
    x = 5 * torch.randn(6, 32)
    assert_parity(clipped_swiglu_reference, clipped_swiglu_npu, (x,), FP32, interleaved=interleaved)
    assert not npu.npu_clipped_swiglu(x.requires_grad_()).requires_grad  # as the real op: no autograd


def test_npu_backends_need_torch_npu_and_new_enough_ops(monkeypatch):
    """Without torch_npu every NPU backend says why it cannot run; an older torch_npu without
    npu_clipped_swiglu leaves that backend unavailable while the others run."""
    monkeypatch.delitem(__import__("sys").modules, "torch_npu", raising=False)
    reasons = {(op, b.name): b.why_not("npu") for op, o in OPS.items() for b in o.backends.values()
               if b.name.startswith("npu_")}
    assert len(reasons) >= 7 and all("torch_npu" in r for r in reasons.values())
    fake_torch_npu.install(monkeypatch, without=("npu_clipped_swiglu",))
    assert "7.3.0" in OPS["clipped_swiglu"].backends["npu_clipped_swiglu"].why_not("npu")
    assert OPS["rms_norm"].backends["npu_rms_norm"].why_not("npu") is None
    assert OPS["rms_norm"].auto("npu").name == "npu_rms_norm"
    assert OPS["clipped_swiglu"].auto("npu").name == "reference"  # opt-in only
