"""Trains the small byte-level BPE tokenizer shipped in data/tokenizer/ (offline, deterministic).

    python data/build_tokenizer.py

It learns from the sample datasets and carries the Qwen3 chat special tokens, so the qwen3
template tokenises exactly as with the real tokenizer's structure (one id per special token),
at a vocabulary small enough for tiny models. data/tokenizer_internvl/ is the same tokenizer plus
InternVL's image tokens <img>, </img>, <IMG_CONTEXT> (ids 1024..1026).
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

HERE = Path(__file__).resolve().parent
VOCAB_SIZE = 1024
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
IMAGE_TOKENS = ["<img>", "</img>", "<IMG_CONTEXT>"]


def corpus() -> list[str]:
    texts = []
    for line in (HERE / "alpaca_sample.jsonl").read_text().splitlines():
        row = json.loads(line)
        texts += [row.get("system", ""), row["instruction"], row["input"], row["output"]]
        texts += [t for pair in row.get("history", []) for t in pair]
    for conv in json.loads((HERE / "sharegpt_sample.json").read_text()):
        texts += [turn["value"] for turn in conv["conversations"]]
    texts += ["system", "user", "assistant", "\n\n"]
    return [t for t in texts if t]


def main() -> None:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.save_pretrained(HERE / "tokenizer")
    print(f"wrote {HERE / 'tokenizer'} with {len(fast)} tokens")
    # Added after training, so the text tokens (and every text model's data) stay exactly the same.
    fast.add_special_tokens({"additional_special_tokens": IMAGE_TOKENS})
    fast.save_pretrained(HERE / "tokenizer_internvl")
    print(f"wrote {HERE / 'tokenizer_internvl'} with {len(fast)} tokens")


if __name__ == "__main__":
    main()
