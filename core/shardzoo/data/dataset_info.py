"""Resolve `data.dataset` into concrete sources: names from dataset_info.json or an inline dict."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..config import ConfigError, DataConfig, resolve_path

FORMATS = ("alpaca", "sharegpt")
INFO_FILE = "dataset_info.json"


@dataclass(frozen=True)
class DatasetSource:
    name: str
    path: Path
    formatting: str = "alpaca"
    columns: dict = field(default_factory=dict)


def _source(name: str, entry: dict, base: Path, where: str) -> DatasetSource:
    if not isinstance(entry, dict) or "file_name" not in entry:
        raise ConfigError(f"{where}: needs at least a 'file_name' (and optionally 'formatting', 'columns')")
    unknown = set(entry) - {"file_name", "formatting", "columns"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: file_name, formatting, columns")
    formatting = entry.get("formatting", "alpaca")
    if formatting not in FORMATS:
        raise ConfigError(f"{where}.formatting: {formatting!r} is not supported; use one of {', '.join(FORMATS)}")
    columns = entry.get("columns", {}) or {}
    if not isinstance(columns, dict):
        raise ConfigError(f"{where}.columns: expected a mapping of our column name -> file column name")
    path = Path(entry["file_name"])
    if not path.is_absolute():
        path = base / path
    if not path.exists():
        raise ConfigError(f"{where}.file_name: {path} does not exist")
    return DatasetSource(name, path, formatting, columns)


def resolve_sources(cfg: DataConfig) -> list[DatasetSource]:
    if isinstance(cfg.dataset, dict):
        return [_source("inline", cfg.dataset, Path.cwd(), "data.dataset")]
    names = [n.strip() for n in str(cfg.dataset).split(",") if n.strip()]
    if not names:
        raise ConfigError("data.dataset: empty; name at least one dataset from dataset_info.json")
    info_dir = resolve_path(cfg.dataset_dir)
    info_path = info_dir / INFO_FILE
    if not info_path.is_file():
        raise ConfigError(f"data.dataset_dir: {info_path} does not exist; point data.dataset_dir at the folder "
                          f"holding {INFO_FILE}")
    try:
        info = json.loads(info_path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{info_path}: invalid JSON: {exc}") from None
    sources = []
    for name in names:
        if name not in info:
            raise ConfigError(f"data.dataset: {name!r} is not in {info_path}; known: {', '.join(sorted(info))}")
        sources.append(_source(name, info[name], info_dir, f"{info_path}[{name!r}]"))
    return sources
