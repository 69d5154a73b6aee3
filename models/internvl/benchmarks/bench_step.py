"""InternVL training step, ours vs transformers' InternVLForConditionalGeneration (the shared harness,
shardzoo.bench.step).

    python models/internvl/benchmarks/bench_step.py [--preset cpu] [--device cuda]

One batch row: `tiles` 448 px tiles (256 image tokens each after the pixel shuffle), then text, seq
tokens in all; image positions carry no loss. Ours: the model under the causal-LM task (chunked
linear + cross-entropy, SDPA). Theirs: forward with labels (SDPA in both towers, full logits).
"""

from __future__ import annotations

import torch
from shardzoo.bench.step import Goal, Preset, Side, StepBenchmark, main
from shardzoo.config import TrainingConfig

IMAGE_TOKEN = 151671
TEXT = dict(model_type="qwen3", vocab_size=151936, hidden_size=256, intermediate_size=768, num_hidden_layers=4,
            num_attention_heads=4, num_key_value_heads=2, head_dim=64, rope_theta=1e6, tie_word_embeddings=False)
VISION = dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024, image_size=448,
              patch_size=14, attention_bias=True, use_qk_norm=False, norm_type="layer_norm", layer_norm_eps=1e-6)
PRESETS = {
    "cpu": Preset(dict(text_config=TEXT, vision_config=VISION), seq=1024, extra={"tiles": 2}),
    # For tests/test_benchmarks.py: the harness end to end in seconds (one tile, one layer per tower).
    "tiny": Preset(dict(text_config=dict(TEXT, hidden_size=64, intermediate_size=96, num_hidden_layers=1,
                                         head_dim=16),
                        vision_config=dict(VISION, hidden_size=64, num_hidden_layers=1, intermediate_size=128)),
                   seq=300, extra={"tiles": 1}),
}


def build(preset: Preset, side: str, dtype: torch.dtype) -> Side:
    from shardzoo.train.task import CausalLMTask
    from shardzoo_internvl import InternVLForConditionalGeneration, tiny_config
    from transformers import InternVLForConditionalGeneration as HF

    config = tiny_config(**preset.config, image_token_id=IMAGE_TOKEN, image_seq_length=256)
    config._attn_implementation = "sdpa"
    tiles, b = preset.extra["tiles"], preset.batch
    ids = torch.randint(0, 150000, (b, preset.seq))
    ids[:, 1:1 + 256 * tiles] = IMAGE_TOKEN
    pixels = torch.randn(b * tiles, 3, 448, 448, dtype=dtype)
    labels = ids.masked_fill(ids == IMAGE_TOKEN, -100)
    if side == "reference":
        model = HF(config)
        return Side(model, lambda: model(input_ids=ids, pixel_values=pixels, labels=labels).loss)
    targets = torch.cat([labels[:, 1:], torch.full((b, 1), -100)], 1)
    normalizer = float((targets != -100).sum())
    model = InternVLForConditionalGeneration(config)
    task = CausalLMTask(model, chunk_size=TrainingConfig().loss_chunk_size)
    return Side(model, lambda: task(ids, targets, normalizer=normalizer, pixel_values=pixels))


BENCHMARK = StepBenchmark(
    model="internvl", reference="transformers", presets=PRESETS, build=build,
    blocks=("model.language_model.layers.{*}", "model.vision_tower.encoder.layer.{*}"),
    describe="ours: CausalLMTask (chunked linear + CE), SDPA in both towers; "
             "transformers: InternVLForConditionalGeneration(labels=...), sdpa in both towers, full logits",
    goals=(Goal("step_time", 1.0),))


if __name__ == "__main__":
    main(BENCHMARK)
