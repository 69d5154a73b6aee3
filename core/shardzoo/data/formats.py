"""Rows -> conversations. A conversation is a list of {"role", "content"} with roles
system / user / assistant; the two supported row formats are alpaca and sharegpt."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from .dataset_info import DatasetSource


class DataError(ValueError):
    """A malformed data file or row; the message names the file and the row."""


ALPACA_COLUMNS = {"prompt": "instruction", "query": "input", "response": "output", "system": "system",
                  "history": "history"}
SHAREGPT_COLUMNS = {"messages": "conversations", "system": "system"}
SHAREGPT_TAGS = {"role_tag": "from", "content_tag": "value"}
ROLE_NAMES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system",
              "observation": "user", "function_call": "assistant"}


def read_rows(path: Path) -> Iterator[tuple[str, dict]]:
    """(location, row) for a .json (a list) or .jsonl file; location is 'file:line' or 'file[index]'."""
    if path.suffix == ".jsonl":
        with open(path) as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    yield f"{path}:{lineno}", json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}:{lineno}: invalid JSON: {exc}") from None
    elif path.suffix == ".json":
        try:
            rows = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: invalid JSON: {exc}") from None
        if not isinstance(rows, list):
            raise DataError(f"{path}: expected a JSON list of rows, got {type(rows).__name__}")
        for i, row in enumerate(rows):
            yield f"{path}[{i}]", row
    else:
        raise DataError(f"{path}: unsupported file type {path.suffix!r}; use .json or .jsonl")


def _text(row: dict, key: str, where: str, required: bool) -> str:
    value = row.get(key)
    if value is None or value == "":
        if required:
            raise DataError(f"{where}: missing or empty field {key!r}")
        return ""
    if not isinstance(value, str):
        raise DataError(f"{where}: field {key!r} must be a string, got {type(value).__name__}")
    return value


def alpaca_to_messages(row: dict, columns: dict, where: str) -> list[dict]:
    col = {**ALPACA_COLUMNS, **columns}
    messages = []
    system = _text(row, col["system"], where, required=False)
    if system:
        messages.append({"role": "system", "content": system})
    history = row.get(col["history"]) or []
    if not isinstance(history, list):
        raise DataError(f"{where}: field {col['history']!r} must be a list of [prompt, response] pairs")
    for i, pair in enumerate(history):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
            raise DataError(f"{where}: {col['history']}[{i}] must be a [prompt, response] pair of strings")
        messages += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    prompt = _text(row, col["prompt"], where, required=True)
    query = _text(row, col["query"], where, required=False)
    messages.append({"role": "user", "content": f"{prompt}\n{query}" if query else prompt})
    messages.append({"role": "assistant", "content": _text(row, col["response"], where, required=True)})
    return messages


def sharegpt_to_messages(row: dict, columns: dict, where: str) -> list[dict]:
    col = {**SHAREGPT_COLUMNS, **SHAREGPT_TAGS, **columns}
    turns = row.get(col["messages"])
    if not isinstance(turns, list) or not turns:
        raise DataError(f"{where}: field {col['messages']!r} must be a non-empty list of turns")
    messages = []
    system = _text(row, col["system"], where, required=False)
    if system:
        messages.append({"role": "system", "content": system})
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise DataError(f"{where}: turn {i} must be an object")
        # Accept both from/value and role/content layouts without configuration.
        role_key = col["role_tag"] if col["role_tag"] in turn else "role"
        content_key = col["content_tag"] if col["content_tag"] in turn else "content"
        role = ROLE_NAMES.get(turn.get(role_key))
        if role is None:
            raise DataError(f"{where}: turn {i} has role {turn.get(role_key)!r}; expected one of {sorted(ROLE_NAMES)}")
        messages.append({"role": role, "content": _text(turn, content_key, f"{where} turn {i}", required=True)})
    roles = [m["role"] for m in messages if m["role"] != "system"]
    if any(m["role"] == "system" for m in messages[1:]) or not roles or roles[-1] != "assistant":
        raise DataError(f"{where}: a conversation needs at most one leading system turn and must end with an "
                        "assistant turn")
    if any(a == b for a, b in zip(roles, roles[1:])) or roles[0] != "user":
        raise DataError(f"{where}: turns must alternate user/assistant starting with user, got {roles}")
    return messages


CONVERTERS = {"alpaca": alpaca_to_messages, "sharegpt": sharegpt_to_messages}


def iter_conversations(source: DatasetSource) -> Iterator[tuple[str, list[dict]]]:
    files = sorted(p for p in source.path.iterdir() if p.suffix in (".json", ".jsonl")) \
        if source.path.is_dir() else [source.path]
    convert = CONVERTERS[source.formatting]
    for path in files:
        for where, row in read_rows(path):
            if not isinstance(row, dict):
                raise DataError(f"{where}: a row must be a JSON object, got {type(row).__name__}")
            yield where, convert(row, source.columns, where)
