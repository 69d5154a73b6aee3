"""Tensor parallel (parallel/tensor.py) on the core's tiny LM: the loss and every parameter gradient of a
batch split over gloo ranks equal one process (tp alone, kv heads replicated below tp, tp x cp), the mesh
sizes, and the refusals that name the numbers. The training-run equivalences are in the Qwen3 package."""

from __future__ import annotations

import copy

import pytest
from shardzoo.config import ConfigError, config_from_dict
from shardzoo.parallel.mesh_shape import mesh_shape
from shardzoo.registry import load_spec
from shardzoo.testing.context_parallel import (
    assert_same_loss_and_grads,
    context_parallel_loss_and_grads,
    reference_loss_and_grads,
)
from shardzoo.train.build import check_tensor_parallel


@pytest.mark.parametrize("tp,cp,packed,hf_config", [
    (2, 1, False, {}),  # odd row lengths: the sequence splits unevenly over the tp ranks
    # 2 kv heads < tp 4: each rank keeps the one its queries read
    pytest.param(4, 1, True, {"num_key_value_heads": 2}, marks=pytest.mark.slow),
    pytest.param(2, 2, True, {}, marks=pytest.mark.slow),
], ids=["tp2", "tp4-kv2-packed", "tp2xcp2-packed"])
def test_batch_loss_and_grads_equal_one_process(tmp_path, tp, cp, packed, hf_config):
    # fp32: both sides compute the same sums in another order (the vocab-parallel log-sum-exp, the
    # row-parallel partial sums); measured loss 1e-7 relative, gradients 1e-6 of their largest entry.
    # A wrong head, vocab or sequence chunk moves them by 1e-2 or more (assert_same_loss_and_grads).
    ref = reference_loss_and_grads("tiny_lm", packed, hf_config)
    ours = context_parallel_loss_and_grads("tiny_lm", cp, packed, tmp_path, hf_config, tp_size=tp)
    assert_same_loss_and_grads(ours, ref)


def _shape(minimal_raw, world, **parallel):
    raw = copy.deepcopy(minimal_raw)
    raw["parallel"] = parallel
    return mesh_shape(config_from_dict(raw).parallel, world)


@pytest.mark.parametrize("world,parallel,sizes", [
    (8, {"tp_size": 2}, (4, 4, 1, 2)),
    (8, {"tp_size": 2, "cp_size": 2}, (4, 2, 2, 2)),
    (8, {"tp_size": 8}, (1, 1, 1, 8)),
    (8, {"tp_size": 2, "fsdp_size": 4}, (4, 4, 1, 2)),
    (8, {"tp_size": 2, "ep_size": 2}, (4, 4, 1, 2)),  # the experts' own mesh: ep_fsdp 4 x ep 2 over all 8
])
def test_mesh_sizes(minimal_raw, world, parallel, sizes):
    shape = _shape(minimal_raw, world, **parallel)
    assert (shape.shard, shape.dp, shape.cp, shape.tp) == sizes
    assert shape.replicate == 1 and f"tp {parallel['tp_size']}" in shape.describe()


@pytest.mark.parametrize("world,parallel,message", [
    (6, {"tp_size": 4}, r"parallel.tp_size=4 does not divide the world size 6"),
    (8, {"tp_size": 2, "cp_size": 3}, r"parallel.cp_size=3 does not divide the world size 8 / tp_size 2"),
    (8, {"tp_size": 2, "fsdp_size": 2}, r"parallel.tp_size=2 with parallel.fsdp_size=2 < 4: .*HSDP"),
])
def test_impossible_meshes(minimal_raw, world, parallel, message):
    with pytest.raises(ConfigError, match=message):
        _shape(minimal_raw, world, **parallel)


@pytest.mark.parametrize("overrides,tp,message", [
    ({"num_attention_heads": 6, "num_key_value_heads": 2, "head_dim": 8}, 4,
     "parallel.tp_size=4: TinyLMConfig .* has 6 attention heads, which do not split evenly over 4 ranks"),
    ({"num_attention_heads": 6, "num_key_value_heads": 3, "head_dim": 8}, 2,
     "has 3 key/value heads; tensor parallel needs tp_size to divide them or be a multiple"),
    ({"vocab_size": 130}, 4, "has vocab_size=130, which does not split evenly over 4 tensor-parallel ranks"),
    ({"intermediate_size": 90}, 4, "has intermediate_size=90, which does not split evenly"),
])
def test_counts_that_do_not_split_are_refused_naming_them(overrides, tp, message):
    spec = load_spec("tiny_lm")
    with pytest.raises(ConfigError, match=message):
        check_tensor_parallel(spec, spec.tiny_config(**overrides), tp)


def test_a_model_without_a_plan_is_refused():
    spec = load_spec("tiny_lm")
    with pytest.raises(ConfigError, match="parallel.tp_size=2: the transformers AutoModel path has no tensor-parallel "
                                          "plan"):
        check_tensor_parallel(None, spec.tiny_config(), 2)
