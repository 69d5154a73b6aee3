"""Chat templates: a conversation -> text segments, each marked trainable or not.

Only assistant segments are trainable (the labels of everything else are masked) unless
train_on_prompt is set. Segments are tokenised one by one, so label boundaries are exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

Segment = tuple[str, bool]  # (text, is_assistant)


def _last_user_index(messages: list[dict]) -> int:
    return max(i for i, m in enumerate(messages) if m["role"] == "user")


def qwen3(messages: list[dict], eos: str) -> list[Segment]:
    """Qwen3 ChatML. Assistant turns after the last user turn carry a think block (empty in
    non-thinking data, exactly as the released template renders it); earlier turns do not."""
    last_user = _last_user_index(messages)
    segments: list[Segment] = []
    for i, m in enumerate(messages):
        role, content = m["role"], m["content"]
        if role == "system":
            segments.append((f"<|im_start|>system\n{content}<|im_end|>\n", False))
        elif role == "user":
            segments.append((f"<|im_start|>user\n{content}<|im_end|>\n<|im_start|>assistant\n", False))
        else:
            if i > last_user and not content.startswith("<think>"):
                content = f"<think>\n\n</think>\n\n{content}"
            segments.append((f"{content}<|im_end|>\n", True))
    return segments


def default(messages: list[dict], eos: str) -> list[Segment]:
    """Plain Human/Assistant turns ending each answer with the tokenizer's eos token."""
    segments: list[Segment] = []
    for m in messages:
        if m["role"] == "system":
            segments.append((f"{m['content']}\n\n", False))
        elif m["role"] == "user":
            segments.append((f"Human: {m['content']}\nAssistant: ", False))
        else:
            segments.append((f"{m['content']}{eos}\n", True))
    return segments


TEMPLATES: dict[str, Callable[[list[dict], str], list[Segment]]] = {"qwen3": qwen3, "default": default}


@dataclass(frozen=True)
class TokenizedSample:
    input_ids: list[int]
    labels: list[int]
    """Same length as input_ids; -100 where no loss is taken (unshifted, HF convention)."""


def tokenize_conversation(segments: list[Segment], tokenizer, cutoff_len: int, train_on_prompt: bool,
                          ignore_index: int = -100) -> TokenizedSample:
    input_ids: list[int] = []
    labels: list[int] = []
    for text, trainable in segments:
        ids = tokenizer.encode(text, add_special_tokens=False)
        input_ids += ids
        labels += ids if (trainable or train_on_prompt) else [ignore_index] * len(ids)
    return TokenizedSample(input_ids[:cutoff_len], labels[:cutoff_len])
