"""Rows -> conversations. A conversation is a list of {"role", "content"} with roles
system / user / assistant; the two supported row formats are alpaca and sharegpt."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from .dataset_info import DatasetSource
from .images import Conversation
from .readers import DataError, RowErrors, read_rows

ALPACA_COLUMNS = {"prompt": "instruction", "query": "input", "response": "output", "system": "system",
                  "history": "history"}
SHAREGPT_COLUMNS = {"messages": "conversations", "system": "system"}
SHAREGPT_TAGS = {"role_tag": "from", "content_tag": "value"}
ROLE_NAMES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system",
              "observation": "user", "function_call": "assistant"}


def _column(row: dict, key: str, where: str, what: str) -> object:
    """A required column: its absence names the column, the row's columns and the remapping fix."""
    if key not in row:
        have = ", ".join(map(str, row)) or "nothing"
        raise DataError(f"{where}: missing column {key!r} ({what}); the row has: {have}. "
                        f"Map your column in the dataset's 'columns', e.g. {{\"{what}\": \"<your column>\"}}")
    return row[key]


def _text(row: dict, key: str, where: str, required: bool) -> str:
    """A text field; `required` ones must be non-empty. Empty answers are kept here and counted later."""
    value = row.get(key)
    if value is None or value == "":
        if required:
            raise DataError(f"{where}: field {key!r} is empty")
        return ""
    if not isinstance(value, str):
        raise DataError(f"{where}: field {key!r} must be a string, got {type(value).__name__}")
    return value


def _as_list(value: object, key: str, where: str) -> object:
    """CSV cells are strings: a list-valued column (history, turns) arrives JSON-encoded."""
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: column {key!r} is not a valid JSON list: {exc}") from None
    return value


def alpaca_to_messages(row: dict, columns: dict, where: str) -> list[dict]:
    col = {**ALPACA_COLUMNS, **columns}
    messages = []
    system = _text(row, col["system"], where, required=False)
    if system:
        messages.append({"role": "system", "content": system})
    history = _as_list(row.get(col["history"]) or [], col["history"], where) or []
    if not isinstance(history, list):
        raise DataError(f"{where}: field {col['history']!r} must be a list of [prompt, response] pairs")
    for i, pair in enumerate(history):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
            raise DataError(f"{where}: {col['history']}[{i}] must be a [prompt, response] pair of strings")
        messages += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    _column(row, col["prompt"], where, "prompt")
    _column(row, col["response"], where, "response")
    prompt = _text(row, col["prompt"], where, required=True)
    query = _text(row, col["query"], where, required=False)
    messages.append({"role": "user", "content": f"{prompt}\n{query}" if query else prompt})
    messages.append({"role": "assistant", "content": _text(row, col["response"], where, required=False)})
    return messages


def sharegpt_to_messages(row: dict, columns: dict, where: str) -> list[dict]:
    col = {**SHAREGPT_COLUMNS, **SHAREGPT_TAGS, **columns}
    turns = _as_list(_column(row, col["messages"], where, "messages"), col["messages"], where)
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
        messages.append({"role": role, "content": _text(turn, content_key, f"{where} turn {i}",
                                                        required=role != "assistant")})
    roles = [m["role"] for m in messages if m["role"] != "system"]
    if any(m["role"] == "system" for m in messages[1:]) or not roles or roles[-1] != "assistant":
        raise DataError(f"{where}: a conversation needs at most one leading system turn and must end with an "
                        "assistant turn")
    if any(a == b for a, b in zip(roles, roles[1:])) or roles[0] != "user":
        raise DataError(f"{where}: turns must alternate user/assistant starting with user, got {roles}")
    return messages


CONVERTERS = {"alpaca": alpaca_to_messages, "sharegpt": sharegpt_to_messages}


def has_empty_answer(messages: list[dict]) -> bool:
    return any(m["role"] == "assistant" and not m["content"].strip() for m in messages)


def row_images(row: dict, columns: dict, base: Path, where: str) -> tuple[str, ...]:
    """The row's image files (column `images`, remappable), relative to the dataset's folder."""
    key = columns.get("images", "images")
    value = _as_list(row.get(key) or [], key, where)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DataError(f"{where}: column {key!r} must be a list of image paths")
    paths = tuple(str(base / v) for v in value)
    for path in paths:
        if not Path(path).is_file():
            raise DataError(f"{where}: image {path} does not exist (paths are relative to {base})")
    return paths


ROW_BYTES_PER_TOKEN = 4096
"""A conversation row may take cutoff_len x this many bytes: far more than any text that fits in
cutoff_len tokens, even JSON-escaped; past it a row can only add text that truncation drops."""


def iter_conversations(source: DatasetSource, errors: RowErrors | None = None,
                       cutoff_len: int | None = None) -> Iterator[tuple[str, Conversation]]:
    """(location, messages) for every well-formed row; malformed ones go to `errors` (default: raise).
    The messages carry the row's image files as `.images`. With `cutoff_len`, rows over
    cutoff_len x ROW_BYTES_PER_TOKEN bytes are bad rows (memory stays bounded whatever a row's size)."""
    errors = errors or RowErrors(skip=False)
    if source.formatting not in CONVERTERS:
        raise DataError(f"dataset {source.name!r} ({source.path}): formatting {source.formatting!r} holds no "
                        f"conversations for a language model; use {' or '.join(CONVERTERS)} rows")
    convert = CONVERTERS[source.formatting]
    path = Path(source.path)
    base = path if path.is_dir() else path.parent
    max_row_bytes = cutoff_len * ROW_BYTES_PER_TOKEN if cutoff_len else None
    for where, row in read_rows(source.path, errors, max_row_bytes=max_row_bytes):
        try:
            if not isinstance(row, dict):
                raise DataError(f"{where}: a row must be an object with named columns, got {type(row).__name__}")
            messages = Conversation(convert(row, source.columns, where))
            messages.images = row_images(row, source.columns, base, where)
        except DataError as exc:
            errors.handle(exc)
            continue
        yield where, messages
