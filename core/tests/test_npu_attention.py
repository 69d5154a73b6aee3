"""The NPU backend of attention through the fake torch_npu (docs/npu_ops.md §5.2): every mask the
models use (causal, GQA, sliding window, packed documents as varlen TND, non-causal), sinks both
through the op's `sink` argument and through the LSE correction of older torch_npu, in the BSND and
BNSD layouts; and the fake rejects what the real op rejects. Real NPU validation needs hardware."""

import pytest
import torch
from shardzoo.ops import OPS
from shardzoo.ops.attention import attention_reference, document_ids_from_position_ids
from shardzoo.ops.attention.npu import attention_npu, fusion_attention
from shardzoo.testing import fake_torch_npu
from shardzoo.testing.parity import assert_parity

# fp32: the fake and the reference compute the same fp32 softmax; only the summation order of the
# extra LSE-correction path differs (a few ulp).
FP32 = dict(atol=2e-5, rtol=2e-5)
# bf16: inputs and output rounded once to bf16 (2^-8 relative), gradients of O(1) values twice.
BF16 = dict(atol=2e-2, rtol=2e-2)

CASES = {
    "causal": dict(causal=True),
    "window": dict(causal=True, sliding_window=3),
    "documents": dict(causal=True, documents=True),
    "documents+window": dict(causal=True, sliding_window=2, documents=True),
    "full": dict(causal=False),
    "full+documents": dict(causal=False, documents=True),
}


def _inputs(dtype, sinks: bool):
    torch.manual_seed(0)
    q = torch.randn(2, 9, 4, 16, dtype=dtype)
    k, v = torch.randn(2, 9, 2, 16, dtype=dtype), torch.randn(2, 9, 2, 16, dtype=dtype)
    s = 2 * torch.randn(4, dtype=dtype) if sinks else None
    return q, k, v, s


def _kwargs(case: str):
    kwargs = dict(CASES[case])
    if kwargs.pop("documents", False):
        positions = torch.tensor([[0, 1, 2, 3, 0, 1, 2, 0, 1], [0, 1, 2, 3, 4, 5, 0, 1, 2]])
        kwargs["document_ids"] = document_ids_from_position_ids(positions)
    return kwargs


def _with_sinks(fn, **kwargs):
    return lambda q, k, v, sinks: fn(q, k, v, sinks=sinks, **kwargs)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("sink_argument", [True, False], ids=["sink-arg", "lse-correction"])
def test_npu_attention_with_sinks(monkeypatch, case, sink_argument):
    """GPT-OSS's attention on both torch_npu generations: the gradient reaches q, k, v and the sinks."""
    fake_torch_npu.install(monkeypatch, attention_sink=sink_argument)
    q, k, v, s = _inputs(torch.float32, sinks=True)
    assert_parity(_with_sinks(attention_reference, **_kwargs(case)), _with_sinks(attention_npu, **_kwargs(case)),
                  (q, k, v, s), FP32)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("dtype,tol", [(torch.float32, FP32), (torch.bfloat16, BF16)])
def test_npu_attention(monkeypatch, case, dtype, tol):
    fake_torch_npu.install(monkeypatch)
    q, k, v, _ = _inputs(dtype, sinks=False)
    assert_parity(attention_reference, attention_npu, (q, k, v), tol, **_kwargs(case))


@pytest.mark.parametrize("sinks", [False, True])
def test_npu_attention_bnsd_layout(monkeypatch, sinks):
    fake_torch_npu.install(monkeypatch, attention_sink=False)
    q, k, v, s = _inputs(torch.float32, sinks=True)
    s = s if sinks else None
    heads_first = [x.transpose(1, 2).contiguous() for x in (q, k, v)]
    out = fusion_attention(*heads_first, sliding_window=4, sinks=s, layout="BNSD")
    torch.testing.assert_close(out.transpose(1, 2), attention_reference(q, k, v, sliding_window=4, sinks=s), **FP32)


def test_npu_attention_calls_the_op_as_documented(monkeypatch):
    """Causal = sparse_mode 3 on the compressed 2048 mask; a window of w = band mode 4 with
    pre_tockens w - 1; documents = TND with cumulative ends over the flattened batch."""
    npu = fake_torch_npu.install(monkeypatch)
    calls = []
    real = npu.npu_fusion_attention
    monkeypatch.setattr(npu, "npu_fusion_attention", lambda *a, **kw: calls.append(kw) or real(*a, **kw))
    q, k, v, _ = _inputs(torch.float32, sinks=False)
    attention_npu(q, k, v)
    attention_npu(q, k, v, sliding_window=3)
    attention_npu(q, k, v, **_kwargs("documents"))
    causal, window, documents = calls
    assert causal["sparse_mode"] == 3 and causal["input_layout"] == "BSND"
    assert tuple(causal["atten_mask"].shape) == (2048, 2048) and causal["atten_mask"].dtype == torch.bool
    assert bool(causal["atten_mask"][0, 1]) and not bool(causal["atten_mask"][1, 0])  # True = discard
    assert (window["sparse_mode"], window["pre_tockens"], window["next_tockens"]) == (4, 2, 0)
    assert documents["input_layout"] == "TND" and documents["actual_seq_qlen"] == [4, 7, 9, 15, 18]


def test_fake_fusion_attention_rejects_what_the_op_rejects(monkeypatch):
    npu = fake_torch_npu.install(monkeypatch)
    q, k, v, _ = _inputs(torch.float32, sinks=False)
    mask = torch.triu(torch.ones(2048, 2048, dtype=torch.bool), 1)
    with pytest.raises(ValueError, match="input_layout must be one of"):
        npu.npu_fusion_attention(q, k, v, 4, "BHSD")
    with pytest.raises(TypeError, match="must share"):
        npu.npu_fusion_attention(q, k.bfloat16(), v, 4, "BSND")
    with pytest.raises(ValueError, match="head_num"):
        npu.npu_fusion_attention(q, k, v, 3, "BSND")
    with pytest.raises(ValueError, match="compressed"):  # a full-size causal mask is not the compressed one
        npu.npu_fusion_attention(q, k, v, 4, "BSND", atten_mask=torch.triu(torch.ones(9, 9, dtype=torch.bool), 1),
                                 sparse_mode=3)
    with pytest.raises(ValueError, match="actual_seq_q"):
        npu.npu_fusion_attention(q[0], k[0], v[0], 4, "TND", atten_mask=mask, sparse_mode=3)
    with pytest.raises(TypeError, match="host ints"):
        npu.npu_fusion_attention(q[0], k[0], v[0], 4, "TND", actual_seq_qlen=torch.tensor([9]),
                                 actual_seq_kvlen=torch.tensor([9]))
    with pytest.raises(ValueError, match="cumulative"):
        npu.npu_fusion_attention(q[0], k[0], v[0], 4, "TND", actual_seq_qlen=[5, 4], actual_seq_kvlen=[5, 4])
    with pytest.raises(TypeError, match="fp32"):
        npu.npu_fusion_attention(q, k, v, 4, "BSND", sink=torch.zeros(4, dtype=torch.bfloat16))
    old = fake_torch_npu.install(monkeypatch, attention_sink=False)
    with pytest.raises(TypeError, match="sink"):
        old.npu_fusion_attention(q, k, v, 4, "BSND", sink=torch.zeros(4))


def test_fake_mask_polarity_and_band(monkeypatch):
    """True in atten_mask discards (the opposite of SDPA's boolean masks); band mode keeps
    i - pre <= j <= i + next."""
    npu = fake_torch_npu.install(monkeypatch)
    q, k, v, _ = _inputs(torch.float32, sinks=False)
    keep = torch.rand(9, 9) > 0.3
    keep.fill_diagonal_(True)
    out = npu.npu_fusion_attention(q, k, v, 4, "BSND", atten_mask=~keep, sparse_mode=1)[0]
    qt, kt, vt = (x.transpose(1, 2) for x in (q, k, v))
    sdpa = torch.nn.functional.scaled_dot_product_attention(qt, kt, vt, attn_mask=keep, enable_gqa=True,
                                                          scale=1.0)
    torch.testing.assert_close(out, sdpa.transpose(1, 2), **FP32)
    mask = torch.triu(torch.ones(2048, 2048, dtype=torch.bool), 1)
    band = npu.npu_fusion_attention(q, k, v, 4, "BSND", atten_mask=mask, sparse_mode=4, pre_tockens=1,
                                    next_tockens=0)[0]
    torch.testing.assert_close(band, attention_reference(q, k, v, sliding_window=2, scale=1.0), **FP32)


def test_npu_attention_is_auto_on_npu(monkeypatch):
    monkeypatch.delitem(__import__("sys").modules, "torch_npu", raising=False)
    assert "torch_npu" in OPS["attention"].backends["npu_fusion_attention"].why_not("npu")
    fake_torch_npu.install(monkeypatch)
    assert OPS["attention"].auto("npu").name == "npu_fusion_attention"
    fake_torch_npu.install(monkeypatch, without=("npu_fusion_attention",))
    assert "no npu_fusion_attention" in OPS["attention"].backends["npu_fusion_attention"].why_not("npu")
