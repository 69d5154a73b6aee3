"""MoE ops: every backend against the reference, forward and backward; the NPU backends through the
fake torch_npu; routers, the clipped SwiGLU, attention sinks and YaRN against transformers."""

import pytest
import torch
from shardzoo.ops.attention import attention_reference, attention_sdpa
from shardzoo.ops.clipped_swiglu import clipped_swiglu_reference
from shardzoo.ops.grouped_mm import grouped_mm_npu, grouped_mm_reference, grouped_mm_torch
from shardzoo.ops.moe_permute import moe_permute_npu, moe_permute_reference, moe_unpermute_npu, moe_unpermute_reference
from shardzoo.ops.rotary import yarn_inv_freq
from shardzoo.testing import fake_torch_npu
from shardzoo.testing.parity import assert_parity

# fp32: the backends reorder fp32 sums (per-group matmuls, fused softmax); see test_ops.py.
FP32 = dict(atol=1e-5, rtol=1e-5)

COUNTS = torch.tensor([5, 0, 9, 2])  # an expert without tokens must get a zero weight gradient


def grouped_inputs(k=16, n=24):
    torch.manual_seed(0)
    return torch.randn(int(COUNTS.sum()), k), torch.randn(len(COUNTS), k, n)


@pytest.mark.parametrize("backend", [grouped_mm_torch, grouped_mm_npu], ids=["torch_grouped_mm", "npu"])
def test_grouped_mm_backends(backend, monkeypatch):
    fake_torch_npu.install(monkeypatch)
    x, w = grouped_inputs()
    assert_parity(lambda a, b: grouped_mm_reference(a, b, COUNTS), lambda a, b: backend(a, b, COUNTS), (x, w), FP32)
    w = w.clone().requires_grad_()
    backend(x, w, COUNTS).square().sum().backward()
    assert w.grad[1].abs().max() == 0 and w.grad[0].abs().max() > 0


def test_grouped_mm_transposed_weight_view():
    x, w = grouped_inputs()
    stored = w.transpose(1, 2).contiguous()  # [E, out, in], as Qwen3-MoE stores it
    torch.testing.assert_close(grouped_mm_torch(x, stored.transpose(1, 2), COUNTS),
                               grouped_mm_reference(x, w, COUNTS), **FP32)


def test_grouped_mm_rejects_unaligned_shapes_with_the_fix():
    x, w = torch.randn(16, 6), torch.randn(4, 6, 8)
    with pytest.raises(ValueError, match="multiples of 4 .*ops.grouped_mm: reference"):
        grouped_mm_torch(x, w, COUNTS)


def test_permute_unpermute_reference_and_npu(monkeypatch):
    fake_torch_npu.install(monkeypatch)
    torch.manual_seed(0)
    tokens, indices = torch.randn(7, 8), torch.randint(0, 4, (7, 3))
    probs = torch.softmax(torch.randn(7, 3), -1)
    permuted, sorted_indices = moe_permute_reference(tokens, indices)
    experts = indices.reshape(-1)[torch.argsort(sorted_indices.long())]
    assert torch.equal(experts, torch.sort(indices.reshape(-1), stable=True).values)  # grouped by expert
    for i in range(7 * 3):  # npu contract: permuted[sorted_indices[i]] = tokens[i // k]
        assert torch.equal(permuted[sorted_indices[i]], tokens[i // 3])
    torch.testing.assert_close(moe_unpermute_reference(permuted, sorted_indices, probs),
                               (tokens[:, None] * probs[..., None]).sum(1), **FP32)
    npu_permuted, npu_sorted = moe_permute_npu(tokens, indices)
    assert torch.equal(npu_permuted, permuted) and torch.equal(npu_sorted, sorted_indices)
    assert_parity(lambda p, q: moe_unpermute_reference(p, sorted_indices, q),
                  lambda p, q: moe_unpermute_npu(p, sorted_indices, q), (permuted, probs), FP32)


def test_clipped_swiglu_matches_transformers_gpt_oss_experts():
    from transformers import GptOssConfig
    from transformers.models.gpt_oss.modeling_gpt_oss import GptOssExperts

    experts = GptOssExperts(GptOssConfig(hidden_size=8, intermediate_size=4, num_local_experts=1, swiglu_limit=0.5))
    # transformers before the swiglu_* config fields (e.g. 5.17) hard-code limit 7.0: take the limit it
    # applies, and inputs a few times larger, so both clamps fire either way.
    x = 4 * experts.limit * torch.randn(5, 8)
    assert (x[:, ::2] > experts.limit).any() and (x[:, 1::2] < -experts.limit).any()
    torch.testing.assert_close(clipped_swiglu_reference(x, alpha=experts.alpha, limit=experts.limit),
                               experts._apply_gate(x), **FP32)


DOCUMENTS = torch.tensor([[0] * 5 + [1] * 4] * 2)


@pytest.mark.parametrize("case", [dict(), dict(sliding_window=3), dict(document_ids=DOCUMENTS)],
                         ids=["causal", "window", "documents"])
def test_attention_sinks_sdpa_and_definition(case):
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 9, 4, 8), torch.randn(2, 9, 2, 8), torch.randn(2, 9, 2, 8)
    sinks = 2 * torch.randn(4)
    assert_parity(attention_reference, attention_sdpa, (q, k, v), FP32, sinks=sinks, **case)
    # A sink of -inf takes no mass: plain attention.
    torch.testing.assert_close(attention_reference(q, k, v, sinks=torch.full((4,), float("-inf")), **case),
                               attention_reference(q, k, v, **case), **FP32)


def test_yarn_matches_transformers():
    from transformers import GptOssConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    config = GptOssConfig(head_dim=64)
    inv_freq, factor = ROPE_INIT_FUNCTIONS["yarn"](config, "cpu")
    ours, our_factor = yarn_inv_freq(64, 150000.0, 32.0, 4096, beta_fast=32.0, beta_slow=1.0, truncate=False)
    torch.testing.assert_close(ours, inv_freq, atol=0, rtol=0)
    assert our_factor == pytest.approx(factor) == pytest.approx(0.1 * torch.log(torch.tensor(32.0)).item() + 1)
