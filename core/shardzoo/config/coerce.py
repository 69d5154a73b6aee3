"""Typed reading of YAML values into the schema's dataclasses: unknown keys and wrong types become
ConfigError naming `section.key` (with a close match when the key looks misspelt)."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Literal, Union

from ..errors import ConfigError


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


# Schema types checked by isinstance alone: type -> (accepts, what the error says is expected).
_PLAIN_TYPES = {
    bool: (lambda v: isinstance(v, bool), "true or false (or 1 / 0)"),
    int: (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    str: (lambda v: isinstance(v, str), "a string"),
    dict: (lambda v: isinstance(v, dict), "a mapping"),
}


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Return value checked against tp (ints accepted for floats), or raise ConfigError."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        arms = typing.get_args(tp)
        if type(None) in arms and value == "None":
            return None
        for arm in arms:
            try:
                return _coerce(value, arm, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise ConfigError(f"{key}: {value!r} is not allowed; choose one of {_type_name(tp)}")
    if origin is list:
        if isinstance(value, str):  # a single pattern written without brackets
            value = [value]
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
        (item_tp,) = typing.get_args(tp)
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is type(None):
        # MindSpeed's configs write an unset value as `None`, which YAML reads as the string "None".
        if value is None or value == "None":
            return None
        raise ConfigError(f"{key}: expected null, got {value!r}")
    if tp is bool and type(value) is int and value in (0, 1):
        return bool(value)  # MindSpeed's configs write flags as 1 / 0
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-5" as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp in _PLAIN_TYPES:
        accepts, description = _PLAIN_TYPES[tp]
        if accepts(value):
            return value
        raise ConfigError(f"{key}: expected {description}, got {value!r}")
    raise AssertionError(f"schema type {tp!r} of {key} has no checker")


def unknown_key(key: str, where: str, valid: list[str]) -> ConfigError:
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return ConfigError(f"{where}{key}: unknown key; {hint}valid keys: {', '.join(sorted(valid))}")


def build_section(cls: type, raw: Any, section: str) -> Any:
    """A dataclass from a mapping of YAML values: unknown keys and wrong types raise ConfigError
    naming `section.key`. Core sections and model packages' option sections are read the same way."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{section}: expected a mapping of keys, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in raw.items():
        if key not in names:
            raise unknown_key(key, f"{section}.", names)
        kwargs[key] = _coerce(value, hints[key], f"{section}.{key}")
    return cls(**kwargs)

