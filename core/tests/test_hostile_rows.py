"""A dataset row cannot blow the run's memory or stop it without its file and line: a huge row is a bad
row (read a block at a time, never whole), a long one is cut before tokenising (counted as truncated),
invalid UTF-8 is a bad row with file:line."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest
from shardzoo.config import DataConfig
from shardzoo.data.dataset_info import DatasetSource
from shardzoo.data.formats import ROW_BYTES_PER_TOKEN, iter_conversations
from shardzoo.data.readers import RowErrors
from shardzoo.data.sft import DataStats, iter_samples, load_tokenizer
from shardzoo.data.templates import cut_to_budget, tokenize_conversations
from shardzoo.errors import DataError

REPO = Path(__file__).resolve().parents[2]
CUTOFF = 64


def _source(path: Path) -> DatasetSource:
    return DatasetSource(name="rows", path=path, formatting="alpaca",
                         columns={"prompt": "instruction", "query": "input", "response": "output"})


def _rows(path: Path, *rows: bytes) -> Path:
    path.write_bytes(b"".join(rows))
    return path


def _row(text: str) -> bytes:
    return (json.dumps({"instruction": "say", "input": "", "output": text}) + "\n").encode()


def test_a_huge_row_is_a_bad_row_read_in_bounded_memory(tmp_path):
    bound = CUTOFF * ROW_BYTES_PER_TOKEN
    huge = _row("x" * (20 * bound))  # 5 MiB
    path = _rows(tmp_path / "rows.jsonl", _row("hello"), huge, _row("world"))
    with pytest.raises(DataError, match=r"rows.jsonl:2: the row is 5.0 MiB, over the 0.2 MiB a row may take"):
        list(iter_conversations(_source(path), RowErrors(skip=False), CUTOFF))
    errors = RowErrors(skip=True)
    tracemalloc.start()
    kept = [where for where, _ in iter_conversations(_source(path), errors, CUTOFF)]
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert kept == [f"{path}:1", f"{path}:3"] and errors.count == 1
    # Never held whole: a few blocks of the bound at a time, whatever the row's size.
    assert peak < min(8 * bound, len(huge) / 4), f"peak {peak} bytes while skipping a {len(huge)}-byte row"


def test_invalid_utf8_is_a_bad_row_with_its_line(tmp_path):
    path = _rows(tmp_path / "rows.jsonl", _row("hello"), b'{"instruction": "\xff\xfe", "output": "x"}\n')
    with pytest.raises(DataError, match=r"rows.jsonl:2: not valid UTF-8"):
        list(iter_conversations(_source(path), RowErrors(skip=False), CUTOFF))
    errors = RowErrors(skip=True)
    assert len(list(iter_conversations(_source(path), errors, CUTOFF))) == 1 and errors.count == 1


def test_a_long_row_is_cut_before_tokenising_and_counted_truncated(tmp_path):
    tokenizer = load_tokenizer(str(REPO / "data/tokenizer"))
    words = " ".join(f"word{i}" for i in range(20000))  # ~170 KB: under the row bound, far over cutoff_len
    path = _rows(tmp_path / "rows.jsonl", _row(words))
    cfg = DataConfig(dataset="rows", cutoff_len=CUTOFF, template="qwen3")
    stats = DataStats()
    (sample,) = iter_samples(_source(path), cfg, tokenizer, stats, RowErrors(skip=False))
    assert len(sample.input_ids) == CUTOFF and stats.truncated == 1
    # The cut keeps exactly the tokens the uncut text starts with.
    segments = [("say", False), (words, True)]
    uncut = tokenizer("say", add_special_tokens=False)["input_ids"] + \
        tokenizer(words, add_special_tokens=False)["input_ids"]
    (cut_sample, truncated), = tokenize_conversations([segments], tokenizer, CUTOFF, train_on_prompt=False)
    assert truncated and cut_sample.input_ids == uncut[:CUTOFF]
    kept, was_cut = cut_to_budget(segments, 100)
    assert was_cut and sum(len(t) for t, _ in kept) == 100
