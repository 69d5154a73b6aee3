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


def split_thinking(content: str) -> tuple[str, str]:
    """'<think>r</think>answer' -> (r, answer), trimmed the way Qwen3's template trims them; no think
    block -> ('', content). Reasoning data of either template is written this way."""
    if "</think>" not in content:
        return "", content
    head, _, answer = content.partition("</think>")
    return head.rstrip("\n").split("<think>")[-1].lstrip("\n"), answer.lstrip("\n")


def qwen3(messages: list[dict], eos: str) -> list[Segment]:
    """Qwen3 ChatML as its released template renders a finished conversation: the assistant turn after
    the last user turn carries its think block (empty '<think>\\n\\n</think>\\n\\n' in non-thinking
    data); earlier assistant turns lose their reasoning."""
    last_user = _last_user_index(messages)
    segments: list[Segment] = []
    for i, m in enumerate(messages):
        role, content = m["role"], m["content"]
        if role == "system":
            segments.append((f"<|im_start|>system\n{content}<|im_end|>\n", False))
        elif role == "user":
            segments.append((f"<|im_start|>user\n{content}<|im_end|>\n<|im_start|>assistant\n", False))
        else:
            reasoning, answer = split_thinking(content)
            if i > last_user:
                answer = f"<think>\n{reasoning.strip(chr(10))}\n</think>\n\n{answer}"
            segments.append((f"{answer}<|im_end|>\n", True))
    return segments


# The harmony system message, minus its 'Current date:' line: a date that changes every day would make
# the tokenised data (and its cache) depend on when the run started.
HARMONY_SYSTEM = ("You are ChatGPT, a large language model trained by OpenAI.\nKnowledge cutoff: 2024-06\n\n"
                  "Reasoning: {effort}\n\n# Valid channels: analysis, commentary, final. Channel must be included "
                  "for every message.")


def gpt_oss(messages: list[dict], eos: str, reasoning_effort: str = "medium") -> list[Segment]:
    """OpenAI harmony format. Our system prompt becomes the developer message ('# Instructions'); the
    harmony system message states identity and reasoning effort. The last assistant turn keeps its
    reasoning in the analysis channel and ends with <|return|>; earlier ones end with <|end|> and drop
    their reasoning, as the format prescribes for conversation history."""
    segments: list[Segment] = [(f"<|start|>system<|message|>{HARMONY_SYSTEM.format(effort=reasoning_effort)}<|end|>",
                                False)]
    last = len(messages) - 1
    for i, m in enumerate(messages):
        role, content = m["role"], m["content"]
        if role == "system":
            segments.append((f"<|start|>developer<|message|># Instructions\n\n{content}<|end|>", False))
        elif role == "user":
            segments.append((f"<|start|>user<|message|>{content}<|end|><|start|>assistant", False))
        else:
            reasoning, answer = split_thinking(content)
            analysis = f"<|channel|>analysis<|message|>{reasoning}<|end|><|start|>assistant" \
                if reasoning and i == last else ""
            stop = "<|return|>" if i == last else "<|end|>"
            segments.append((f"{analysis}<|channel|>final<|message|>{answer}{stop}", True))
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


TEMPLATES: dict[str, Callable[[list[dict], str], list[Segment]]] = {"qwen3": qwen3, "gpt_oss": gpt_oss,
                                                                    "default": default}
TEMPLATE_ALIASES = {"gpt": "gpt_oss"}
"""Other projects' names for our templates: MindSpeed-LLM calls the harmony format `gpt`."""


@dataclass(frozen=True)
class TokenizedSample:
    input_ids: list[int]
    labels: list[int]
    """Same length as input_ids; -100 where no loss is taken (unshifted, HF convention)."""
    images: tuple[str, ...] = ()
    """Image files of the sample's image tokens, in order."""


CUT_SLACK_CHARS = 1024
"""Characters kept past what cutoff_len tokens can cover, so the tokens before the cut are those of the
uncut text (a word would have to be longer than this to straddle the cut)."""


def longest_token_chars(tokenizer) -> int:
    """The most characters one token covers: the longest vocabulary entry (byte-level and sentencepiece
    spellings are never shorter than the text they stand for)."""
    cached = getattr(tokenizer, "_shardzoo_longest_token", None)
    if cached is None:
        cached = max((len(t) for t in tokenizer.get_vocab()), default=1)
        tokenizer._shardzoo_longest_token = cached
    return cached


def cut_to_budget(segments: list[Segment], budget: int) -> tuple[list[Segment], bool]:
    """The segments' text up to `budget` characters in all (later ones dropped), and whether anything
    was cut: text past what cutoff_len tokens can hold never reaches the tokenizer, so a huge row costs
    no more memory than a long one."""
    out, used = [], 0
    for text, trainable in segments:
        if used + len(text) > budget:
            if budget > used:
                out.append((text[: budget - used], trainable))
            return out, True
        out.append((text, trainable))
        used += len(text)
    return out, False


def tokenize_conversations(conversations: list[list[Segment]], tokenizer, cutoff_len: int, train_on_prompt: bool,
                           ignore_index: int = -100) -> list[tuple[TokenizedSample, bool]]:
    """(sample, was_truncated) per conversation. All segments of the batch go to the tokenizer in one
    call (the fast tokenizer encodes a batch in parallel); each segment is encoded on its own so the
    label boundaries are exact. Text beyond what cutoff_len tokens can cover is cut first."""
    budget = cutoff_len * longest_token_chars(tokenizer) + CUT_SLACK_CHARS
    cut = [cut_to_budget(segments, budget) for segments in conversations]
    conversations = [segments for segments, _ in cut]
    texts = [text for segments in conversations for text, _ in segments]
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    out, k = [], 0
    for segments, (_, was_cut) in zip(conversations, cut):
        input_ids: list[int] = []
        labels: list[int] = []
        for _, trainable in segments:
            ids = encoded[k]
            k += 1
            input_ids += ids
            labels += ids if (trainable or train_on_prompt) else [ignore_index] * len(ids)
        out.append((TokenizedSample(input_ids[:cutoff_len], labels[:cutoff_len]),
                    len(input_ids) > cutoff_len or was_cut))
    return out


def tokenize_conversation(segments: list[Segment], tokenizer, cutoff_len: int, train_on_prompt: bool,
                          ignore_index: int = -100) -> TokenizedSample:
    return tokenize_conversations([segments], tokenizer, cutoff_len, train_on_prompt, ignore_index)[0][0]
