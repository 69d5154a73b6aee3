"""Resolve `data.dataset` into concrete sources: names from dataset_info.json or an inline dict."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..config import ConfigError, DataConfig, resolve_path

FORMATS = ("alpaca", "sharegpt", "video")
"""Row formats: alpaca and sharegpt conversations (causal LMs), video-caption rows (Wan's task)."""
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


def _raw_paths(cfg: DataConfig) -> list[DatasetSource]:
    """mg data without a dataset_info.json: every name is a file or folder of raw text."""
    sources = []
    for name in (n.strip() for n in str(cfg.dataset).split(",") if n.strip()):
        path = resolve_path(name)
        if not path.exists():
            raise ConfigError(f"data.dataset: {path} does not exist (mg pretraining data names files or folders of "
                              f"raw text, or entries of {INFO_FILE} in data.dataset_dir)")
        sources.append(DatasetSource(path.name, path))
    return sources


def resolve_sources(cfg: DataConfig) -> list[DatasetSource]:
    if isinstance(cfg.dataset, dict):
        sources = [_source("inline", cfg.dataset, Path.cwd(), "data.dataset")]
        _check_probs(cfg, sources)
        return sources
    if cfg.is_pretraining and not resolve_path(cfg.dataset_dir).joinpath(INFO_FILE).is_file():
        return _raw_paths(cfg)
    names = [n.strip() for n in str(cfg.dataset).split(",") if n.strip()]
    if not names:
        raise ConfigError("data.dataset: empty; name at least one dataset from dataset_info.json")
    info_dir = resolve_path(cfg.dataset_dir)
    info_path = info_dir / INFO_FILE
    if not info_path.is_file():
        raise ConfigError(f"data.dataset_dir: looked for {INFO_FILE} in {info_dir} (data.dataset_dir is "
                          f"{cfg.dataset_dir!r}, relative to the current directory {Path.cwd()}) and found none; set "
                          f"data.dataset_dir to the folder holding {INFO_FILE}")
    try:
        info = json.loads(info_path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{info_path}: invalid JSON: {exc}") from None
    sources = []
    for name in names:
        if name in info:
            sources.append(_source(name, info[name], info_dir, f"{info_path}[{name!r}]"))
        elif cfg.is_pretraining and resolve_path(name).exists():
            # Pretraining names raw text files directly, as MindSpeed's mg data does.
            sources.append(DatasetSource(Path(name).name, resolve_path(name)))
        else:
            raw_path = " or an existing file/folder path" if cfg.is_pretraining else ""
            raise ConfigError(f"data.dataset: {name!r} is not in {info_path}{raw_path}; known: "
                              f"{', '.join(sorted(info))}")
    _check_probs(cfg, sources)
    return sources


def _check_probs(cfg: DataConfig, sources: list[DatasetSource]) -> None:
    if cfg.interleave_probs is not None and len(cfg.interleave_probs) != len(sources):
        raise ConfigError(f"data.interleave_probs: {len(cfg.interleave_probs)} probabilities for {len(sources)} "
                          f"datasets ({', '.join(s.name for s in sources)}); give one per dataset")
