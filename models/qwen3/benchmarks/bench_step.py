"""Qwen3 training step, ours vs transformers' Qwen3ForCausalLM (the shared harness, shardzoo.bench.step).

    python models/qwen3/benchmarks/bench_step.py                   # CPU: preset cpu, fp32
    python models/qwen3/benchmarks/bench_step.py --preset cpu-large  # the largest CPU config (MFU goal)
    python models/qwen3/benchmarks/bench_step.py --device cuda       # one GPU: Qwen3-1.7B, seq 4096, bf16

Ours: the model under the causal-LM task (chunked linear + cross-entropy, attention through the ops
dispatch: SDPA). Theirs: forward with labels (SDPA attention, full logits, mean cross-entropy).
"""

from __future__ import annotations

import torch
from shardzoo.bench.step import Goal, Preset, Side, StepBenchmark, main
from shardzoo.config import TrainingConfig
from shardzoo.device import CPU, CUDA, NPU

COMMON = dict(vocab_size=151936, rope_theta=1e6, rms_norm_eps=1e-6, max_position_embeddings=40960)
PRESETS = {
    # For tests/test_benchmarks.py: the harness end to end in a second.
    "tiny": Preset(dict(COMMON, vocab_size=512, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, head_dim=32, tie_word_embeddings=False), seq=64),
    # The vocabulary is the real one (151936): the logits are where the memory goes.
    "cpu": Preset(dict(COMMON, hidden_size=256, intermediate_size=768, num_hidden_layers=4, num_attention_heads=4,
                       num_key_value_heads=2, head_dim=64, tie_word_embeddings=False), seq=2048),
    # The largest that fits the CPU benchmark budget (about 10 s a step on 2 cores; the whole run
    # about 3 minutes): matmuls big enough that the step can run near the machine's matmul rate.
    "cpu-large": Preset(dict(COMMON, hidden_size=1024, intermediate_size=3072, num_hidden_layers=4,
                             num_attention_heads=8, num_key_value_heads=4, head_dim=128, tie_word_embeddings=False),
                        seq=1024),
    # Qwen3-1.7B as released (config.json of Qwen/Qwen3-1.7B).
    "1.7b": Preset(dict(COMMON, hidden_size=2048, intermediate_size=6144, num_hidden_layers=28, num_attention_heads=16,
                        num_key_value_heads=8, head_dim=128, tie_word_embeddings=True), seq=4096),
}


def build(preset: Preset, side: str, dtype: torch.dtype) -> Side:
    from shardzoo.train.task import CausalLMTask
    from shardzoo_qwen3 import Qwen3ForCausalLM
    from transformers import Qwen3Config
    from transformers import Qwen3ForCausalLM as HF

    config = Qwen3Config(**preset.config)
    config._attn_implementation = "sdpa"
    ids = torch.randint(0, config.vocab_size, (preset.batch, preset.seq))
    if side == "reference":
        model = HF(config)
        return Side(model, lambda: model(input_ids=ids, labels=ids).loss)
    targets = torch.cat([ids[:, 1:], torch.full((preset.batch, 1), -100)], 1)
    normalizer = float((targets != -100).sum())
    model = Qwen3ForCausalLM(config)
    task = CausalLMTask(model, chunk_size=TrainingConfig().loss_chunk_size)
    return Side(model, lambda: task(ids, targets, normalizer=normalizer))


BENCHMARK = StepBenchmark(
    model="qwen3", reference="transformers", presets=PRESETS, build=build, blocks=("model.layers.{*}",),
    describe="ours: CausalLMTask (chunked linear + CE), SDPA via the ops dispatch; "
             "transformers: Qwen3ForCausalLM(labels=...), attn_implementation=sdpa, full logits",
    default_preset={CPU: "cpu", CUDA: "1.7b", NPU: "1.7b"}, suite={CPU: ("cpu", "cpu-large")},
    goals=(Goal("step_time", 0.9), Goal("peak_memory", 0.5), Goal("mfu", 0.5, preset="cpu-large"),
           Goal("mfu", 0.4, device_type=CUDA, preset="1.7b")))


if __name__ == "__main__":
    main(BENCHMARK)
