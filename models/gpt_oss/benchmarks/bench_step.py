"""GPT-OSS training step, ours vs transformers' GptOssForCausalLM (the shared harness, shardzoo.bench.step).

    python models/gpt_oss/benchmarks/bench_step.py                 # CPU: preset cpu, fp32
    python models/gpt_oss/benchmarks/bench_step.py --device cuda    # one GPU: gpt-oss-20b's layer, 2 layers, bf16

Ours: the model under the causal-LM task (chunked linear + cross-entropy, SDPA with sinks,
torch._grouped_mm experts). Theirs: forward with labels, eager attention (transformers' GPT-OSS
has no SDPA path) and the experts implementation transformers picks by default (grouped_mm).
"""

from __future__ import annotations

import torch
from shardzoo.bench.step import Goal, Preset, Side, StepBenchmark, main
from shardzoo.config import TrainingConfig
from shardzoo.device import CPU, CUDA, NPU

COMMON = dict(vocab_size=201088, num_attention_heads=64, num_key_value_heads=8, head_dim=64, sliding_window=128,
              max_position_embeddings=131072, rms_norm_eps=1e-5, tie_word_embeddings=False, pad_token_id=199999)
PRESETS = {
    # For tests/test_benchmarks.py: the harness end to end in a second.
    "tiny": Preset(dict(COMMON, vocab_size=512, pad_token_id=511, hidden_size=64, intermediate_size=64,
                        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                        num_local_experts=4, num_experts_per_tok=2, sliding_window=8), seq=64),
    "cpu": Preset(dict(COMMON, hidden_size=256, intermediate_size=256, num_hidden_layers=4, num_attention_heads=8,
                       num_key_value_heads=2, head_dim=32, num_local_experts=8, num_experts_per_tok=2), seq=1024),
    # gpt-oss-20b's layer (hidden 2880, 32 experts, top 4, 64 / 8 heads of 64) with 2 of its 24
    # layers, so that both sides and their bf16 AdamW state fit one 80 GB GPU.
    "20b-2layers": Preset(dict(COMMON, hidden_size=2880, intermediate_size=2880, num_hidden_layers=2,
                               num_local_experts=32, num_experts_per_tok=4,
                               layer_types=["sliding_attention", "full_attention"]), seq=4096),
}


def build(preset: Preset, side: str, dtype: torch.dtype) -> Side:
    from shardzoo.train.task import CausalLMTask
    from shardzoo_gpt_oss import GptOssForCausalLM
    from transformers import GptOssConfig
    from transformers import GptOssForCausalLM as HF

    config = GptOssConfig(**preset.config)
    config._attn_implementation = "eager"
    ids = torch.randint(0, min(199000, config.vocab_size), (preset.batch, preset.seq))
    if side == "reference":
        model = HF(config)
        return Side(model, lambda: model(input_ids=ids, labels=ids).loss)
    targets = torch.cat([ids[:, 1:], torch.full((preset.batch, 1), -100)], 1)
    normalizer = float((targets != -100).sum())
    model = GptOssForCausalLM(config)
    task = CausalLMTask(model, chunk_size=TrainingConfig().loss_chunk_size)
    return Side(model, lambda: task(ids, targets, normalizer=normalizer))


BENCHMARK = StepBenchmark(
    model="gpt_oss", reference="transformers", presets=PRESETS, build=build, blocks=("model.layers.{*}",),
    describe="ours: CausalLMTask (chunked linear + CE), SDPA with sinks, torch._grouped_mm experts; "
             "transformers: GptOssForCausalLM(labels=...), eager attention, default experts implementation, "
             "full logits",
    default_preset={CPU: "cpu", CUDA: "20b-2layers", NPU: "20b-2layers"},
    goals=(Goal("step_time", 0.8),))


if __name__ == "__main__":
    main(BENCHMARK)
