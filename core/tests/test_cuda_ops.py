"""CUDA backends. FlexAttention's masks and sink identity are checked on the CPU (forward, eager: Flex
has no CPU backward); the rest runs only where CUDA is present and skips otherwise: every CUDA
backend of every op forward and backward against its reference, compiled FlexAttention included,
and torch._grouped_mm in bf16."""

from functools import partial

import pytest
import torch
from shardzoo.ops import OPS
from shardzoo.ops.attention import attention_reference, document_ids_from_position_ids, fastest_sdpa
from shardzoo.ops.attention.flex import attention_flex, flex_attention_masked, flex_missing
from shardzoo.ops.grouped_mm import grouped_mm_reference, grouped_mm_torch
from shardzoo.testing.parity import assert_as_precise, assert_parity

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
needs_flex = pytest.mark.skipif(flex_missing() is not None, reason=str(flex_missing()))

# fp32: Flex and the reference both softmax in fp32; the orders of summation differ (a few ulp of
# O(1) outputs). The CUDA kernels use TF32-free fp32 here (torch's default for matmul is highest).
FP32 = dict(atol=1e-5, rtol=1e-5)
# bf16: inputs, probabilities and output each rounded to bf16 (2^-8 relative) in the fused kernels.
BF16 = dict(atol=2e-2, rtol=2e-2)

MASKS = {
    "window": dict(sliding_window=3),
    "documents": dict(documents=True),
    "documents+window": dict(sliding_window=2, documents=True),
    "sinks": dict(sinks=True),
    "window+sinks": dict(sliding_window=4, sinks=True),
    "full+sinks": dict(causal=False, sinks=True),
    "causal": dict(),
}


def _inputs(dtype, device, tokens=9, **case):
    torch.manual_seed(0)
    q = torch.randn(2, tokens, 4, 16, dtype=dtype, device=device)
    k, v = (torch.randn(2, tokens, 2, 16, dtype=dtype, device=device) for _ in range(2))
    kwargs = dict(case)
    if kwargs.pop("documents", False):
        lengths = [[4, 3, 2], [6, 3]] if tokens == 9 else [[tokens // 2, tokens - tokens // 2]] * 2
        positions = torch.cat([torch.cat([torch.arange(n) for n in row])[None] for row in lengths])
        kwargs["document_ids"] = document_ids_from_position_ids(positions).to(device)
    sinks = 2 * torch.randn(4, dtype=dtype, device=device) if kwargs.pop("sinks", False) else None
    return (q, k, v), sinks, kwargs


@needs_flex
@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
@pytest.mark.parametrize("case", [c for c in MASKS if c != "causal"])
def test_flex_masks_and_sinks_forward(case):
    """The BlockMask equals attention_mask and the LSE rescale equals the sink column (forward, eager on CPU)."""
    (q, k, v), sinks, kwargs = _inputs(torch.float32, "cpu", **MASKS[case])
    out = flex_attention_masked(q, k, v, sinks=sinks, compiled=False, **kwargs)
    torch.testing.assert_close(out, attention_reference(q, k, v, sinks=sinks, **kwargs), **FP32)


def test_flex_is_the_cuda_default_and_sdpa_stays_selectable():
    assert OPS["attention"].backends["flex"].devices == ("cuda",)
    if flex_missing() is None:
        assert OPS["attention"].auto("cuda").name == "flex"
    assert OPS["attention"].select("cuda", "sdpa").name == "sdpa"


@needs_cuda
@needs_flex
@pytest.mark.parametrize("case", list(MASKS))
@pytest.mark.parametrize("dtype,tol", [(torch.float32, FP32), (torch.bfloat16, BF16)])
def test_flex_backend_on_cuda(case, dtype, tol):
    """Compiled FlexAttention (SDPA for plain causal), forward and every input gradient, the sinks' too."""
    (q, k, v), sinks, kwargs = _inputs(dtype, "cuda", tokens=256, **MASKS[case])
    inputs = (q, k, v) if sinks is None else (q, k, v, sinks)

    def run(fn):
        return lambda q, k, v, s=None: fn(q, k, v, sinks=s, **kwargs)

    assert_parity(run(attention_reference), run(attention_flex), inputs, tol)


@needs_cuda
@pytest.mark.parametrize("dtype,tol", [(torch.float32, FP32), (torch.bfloat16, BF16)])
def test_sdpa_fastest_kernel_on_cuda(dtype, tol):
    (q, k, v), _, _ = _inputs(dtype, "cuda", tokens=256)
    sdpa = OPS["attention"].backends["sdpa"].fn
    with fastest_sdpa("cuda"):
        assert_parity(attention_reference, sdpa, (q, k, v), tol)


@needs_cuda
def test_torch_grouped_mm_bf16_on_cuda():
    """bf16 grouped GEMM (CUTLASS on Hopper, a loop elsewhere) against one matmul per expert, with an
    empty expert; bf16 products accumulate in fp32 on both sides, output rounded once."""
    torch.manual_seed(0)
    x = torch.randn(300, 128, dtype=torch.bfloat16, device="cuda")
    w = 0.05 * torch.randn(4, 128, 256, dtype=torch.bfloat16, device="cuda")
    counts = torch.tensor([100, 0, 150, 50], device="cuda")
    assert_parity(grouped_mm_reference, grouped_mm_torch, (x, w, counts), BF16)


ELEMENTWISE_BACKENDS = [(name, backend) for name in ("rms_norm", "rotary", "swiglu", "clipped_swiglu")
                        for backend, b in OPS[name].backends.items() if "cuda" in b.devices and backend != "reference"]


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name,backend", ELEMENTWISE_BACKENDS)
def test_elementwise_backends_on_cuda(name, backend, dtype):
    """Each CUDA backend of the norm, rotary and activation ops on its example (Qwen3-1.7B shapes), forward and
    every input gradient, on the GPU: in fp32 equal to the reference to a few ulp; in bf16 no farther from
    the fp32 result than twice the bf16 reference (a weight's gradient sums rounded products over the tokens
    and can cancel: at 256 tokens `native` is 0.1 from the bf16 reference on the CPU, nearer fp32 than it)."""
    op = OPS[name]
    with torch.device("cuda"):
        torch.manual_seed(0)
        args, kwargs = op.example(256, dtype)
    check = partial(assert_parity, tol=FP32) if dtype == torch.float32 else assert_as_precise
    check(op.backends["reference"].fn, op.backends[backend].fn, args, **kwargs)


@needs_cuda
@pytest.mark.parametrize("x_dtype", [torch.float32, torch.bfloat16])
def test_interleave_rotary_on_cuda(x_dtype):
    """Wan's rotary (interleave pairs, fp32 tables): the complex multiply on the GPU against the reference."""
    from shardzoo.ops.rotary import rope_cos_sin, rope_inv_freq, rotary_autograd_fn, rotary_reference

    torch.manual_seed(0)
    x = torch.randn(2, 64, 4, 32, dtype=x_dtype, device="cuda")
    positions = torch.arange(64, device="cuda")[None].expand(2, 64)
    cos, sin = rope_cos_sin(positions, rope_inv_freq(32, 1e4, device="cuda"), torch.float32, mode="interleave")
    # fp32 here: the GPU may fuse a product and a sum (one rounding less than the reference), a few ulp.
    assert_parity(rotary_reference, rotary_autograd_fn, (x, cos, sin), FP32 if x_dtype == torch.float32 else BF16,
                  mode="interleave")
