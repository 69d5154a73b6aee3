"""`shardzoo plan`: per-rank figures of a tiny GPT-OSS config against totals computed by hand, and
the 20B config on 8 ranks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from shardzoo.config import ConfigError, load_config
from shardzoo.plan import plan_memory

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "models/gpt_oss/configs/tune_gpt_oss_tiny.yaml"

# tune_gpt_oss_tiny.yaml by hand: V 1024, H 64, intermediate 64, L 4, 4 heads / 2 kv heads of 16, 4 experts.
V, H, INTER, L, Q, KV, E = 1024, 64, 64, 4, 4 * 16, 2 * 16, 4
ATTENTION = (H * Q + Q) + 2 * (H * KV + KV) + (Q * H + H) + 4  # q, k, v, o with biases; 4 sinks
ROUTER = E * H + E
EXPERTS = E * (H * 2 * INTER + 2 * INTER) + E * (INTER * H + H)
BLOCK_DENSE = 2 * H + ATTENTION + ROUTER
ROOT = V * H + H + V * H  # embedding, final norm, head
TOTAL = ROOT + L * (BLOCK_DENSE + EXPERTS)


@pytest.mark.parametrize("ep", [1, 2])
def test_tiny_plan_matches_hand_computed_totals(ep):
    cfg = load_config(TINY, ["--parallel.ep_size", str(ep), "--training.output_dir", "unused"])
    plan = plan_memory(cfg, world=2)
    # fp32 storage; every sharded dim is even, so rank 0 holds exactly half of every tensor (experts:
    # half of them on the ep axis, or half of each on the fsdp axis).
    assert plan.params == TOTAL * 4 // 2
    assert plan.grads == plan.params
    assert plan.optimizer == 2 * plan.params
    # param_dtype fp32, no prefetch: the root unit plus one block with this rank's experts.
    assert plan.gathered == (ROOT + BLOCK_DENSE + EXPERTS // ep) * 4
    # fp32 gradients and reduce: the root's unsharded gradients, and a block's plus its reduce-scatter input.
    assert plan.reduction == (ROOT + 2 * (BLOCK_DENSE + EXPERTS // ep)) * 4
    assert plan.total == (plan.params + plan.grads + plan.optimizer + plan.gathered + plan.reduction
                          + plan.activations)


def test_a_config_the_model_class_refuses_is_one_config_error():
    """transformers' own config checks (here GPT-OSS's layer_types against num_hidden_layers) name the config,
    not a traceback."""
    cfg = load_config(TINY, ["--training.output_dir", "unused",
                             "--model.hf_config.layer_types", "['sliding_attention']"])
    with pytest.raises(ConfigError, match=r"GptOssConfig refuses it: `num_hidden_layers` \(4\) must be equal to the "
                                          r"number of `layer_types` \(1\)"):
        plan_memory(cfg, world=2)


def test_frozen_parameters_are_gathered_but_never_reduced():
    cfg = load_config(TINY, ["--training.output_dir", "unused", "--model.freeze_modules",
                             "['model.embed_tokens', 'lm_head']"])
    plan = plan_memory(cfg, world=2)
    assert plan.gathered == (ROOT + BLOCK_DENSE + EXPERTS) * 4  # the frozen root is still computed with
    assert plan.reduction == (H + 2 * (BLOCK_DENSE + EXPERTS)) * 4  # the root: the final norm's gradient only
    assert plan.grads == (TOTAL - 2 * V * H) * 4 // 2


def test_resume_export_and_offload_figures():
    """The other peaks by hand: a resume creates the optimizer's state by a zero step (CPU: then maps the
    rank's checkpoint file, parameters and state again, plus one read buffer of the largest shard); the
    export holds its largest tensor three times (fp32 checkpoint, fp32 export: no copy) plus its fixed
    runtime; offloading on an accelerator moves the sharded state to the host."""
    from shardzoo.plan import EXPORT_RUNTIME_BYTES

    base = ["--training.output_dir", "unused"]
    cpu = plan_memory(load_config(TINY, base), world=2)
    largest_shard = V * H * 4 // 2  # the embedding's (and the head's) half
    assert cpu.resume == 2 * (cpu.params + cpu.optimizer) + largest_shard
    assert cpu.export == 3 * V * H * 4 + EXPORT_RUNTIME_BYTES  # the embedding (the head: as large)
    accelerator = plan_memory(load_config(TINY, base + ["--training.device", "cuda"]), world=2)
    assert accelerator.resume == accelerator.params + accelerator.grads + accelerator.optimizer
    offloaded = plan_memory(load_config(TINY, base + ["--training.device", "cuda", "--parallel.offload_to_cpu",
                                                      "true"]), world=2)
    assert offloaded.total == accelerator.total - (accelerator.params + accelerator.grads + accelerator.optimizer)
    assert offloaded.resume == 0 and "[host]" in offloaded.rows()[0][0]
    # On the CPU there is no host to offload to: the same figures.
    assert plan_memory(load_config(TINY, base + ["--parallel.offload_to_cpu", "true"]), world=2).total == cpu.total


def test_recompute_shrinks_the_activation_estimate():
    cfg = load_config(TINY, ["--training.output_dir", "unused"])
    with_recompute = load_config(TINY, ["--training.output_dir", "unused", "--parallel.recompute", "true"])
    full, saved = plan_memory(cfg, 2).activations, plan_memory(with_recompute, 2).activations
    # Without recompute L blocks keep their internals; with it one block does, and the L checkpoints keep their
    # inputs (which no block keeps otherwise: the norms save their output, not their input).
    n = 8 * 256
    # Attention: two norm outputs, q (projected, rotated, output, o's copy) and k, v (projected, rotated; v);
    # MoE: k = 2 copies of the token with gate/up and product, router probs.
    internals = n * ((2 * H + 4 * Q + 3 * KV) + 2 * (H + 3 * INTER) + E) * 4
    # On the CPU (this config's device) SDPA also keeps the sink bias and the probabilities per layer.
    internals += 2 * 8 * 4 * 256 * 257 * 4
    assert full - saved == (L - 1) * internals - L * n * H * 4


def test_context_parallel_divides_the_activation_estimate():
    base = ["--training.output_dir", "unused", "--parallel.recompute", "true"]
    cfg = load_config(TINY, base)
    one = plan_memory(cfg, 2)
    two = plan_memory(load_config(TINY, base + ["--parallel.cp_size", "2"]), 2)
    assert "cp 2" in two.mesh
    # Every term is linear in the rank's tokens except the loss chunk's logits (the chunk is smaller
    # than the 8 x 256 / 2 tokens of a rank).
    assert cfg.training.loss_chunk_size < 8 * 256 // 2
    logits = cfg.training.loss_chunk_size * V * 4 * 2
    assert two.activations - logits == (one.activations - logits) // 2
    # Parameters are sharded over dp x cp ranks, as without cp.
    assert (two.params, two.gathered) == (one.params, one.gathered)


def test_context_parallel_refuses_heads_it_cannot_split():
    cfg = load_config(TINY, ["--training.output_dir", "unused", "--parallel.cp_size", "2",
                             "--model.hf_config.num_attention_heads", "3",
                             "--model.hf_config.num_key_value_heads", "1"])
    with pytest.raises(ConfigError, match="parallel.cp_size=2: .* has 3 attention heads, which do not split evenly"):
        plan_memory(cfg, 2)
    cfg = load_config(TINY, ["--training.output_dir", "unused", "--parallel.cp_size", "4",
                             "--model.hf_config.num_attention_heads", "8",
                             "--model.hf_config.num_key_value_heads", "3"])
    with pytest.raises(ConfigError, match="has 3 key/value heads; Ulysses needs cp_size to divide them or be a"):
        plan_memory(cfg, 4)


def test_plan_cli_on_the_20b_config_for_8_ranks():
    proc = subprocess.run([sys.executable, "-m", "shardzoo", "plan", "models/gpt_oss/configs/tune_gpt_oss_20b_4k.yaml",
                           "--world-size", "8", "--device-memory", "64GB", "--model.model_name_or_path",
                           "models/gpt_oss/configs/gpt-oss-20b", "--parallel.ep_size", "4"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "world 8 (fsdp 1x8, ep_fsdp 2 x ep 4)" in out and "fits in 64.0 GiB" in out
    params_gib = float(out.split("parameters (sharded)")[1].split("GiB")[0])
    assert 20.0e9 * 4 / 8 / 2**30 < params_gib < 22.0e9 * 4 / 8 / 2**30  # 20.9B fp32 over 8 ranks
    proc = subprocess.run([sys.executable, "-m", "shardzoo", "plan", "models/gpt_oss/configs/tune_gpt_oss_20b_4k.yaml",
                           "--world-size", "8", "--device-memory", "32GB", "--model.model_name_or_path",
                           "models/gpt_oss/configs/gpt-oss-20b"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "does NOT fit in 32.0 GiB" in proc.stdout


def test_model_id_auto_plans_and_trains_through_transformers(tmp_path):
    """`model.model_id: auto` takes transformers' class even where a package claims the architecture;
    `plan` builds it on the meta device, and it plans the same parameter bytes as the package."""

    auto = ["--model.model_id", "auto", "--model.hf_config.model_type", "qwen3"]
    cfg = load_config(REPO / "models/qwen3/configs/tune_qwen3_tiny.yaml", auto)
    ours = load_config(REPO / "models/qwen3/configs/tune_qwen3_tiny.yaml")
    assert plan_memory(cfg, 2).params == plan_memory(ours, 2).params
    proc = subprocess.run([sys.executable, "-m", "shardzoo", "train", "models/qwen3/configs/tune_qwen3_tiny.yaml",
                           *auto, "--training.output_dir", str(tmp_path), "--training.max_steps", "2",
                           "--data.max_samples", "16", "--training.logging_steps", "1"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "model Qwen3ForCausalLM | path AutoModel" in proc.stdout
