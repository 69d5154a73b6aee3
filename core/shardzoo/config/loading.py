"""Config files and overrides -> a checked Config: YAML, `--section.key VALUE` overrides, an external
fsdp2 yaml, other spellings of our keys (ALIASES), then the typed sections and the value checks."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError
from .coerce import build_section, unknown_key
from .schema import SECTIONS, Config
from .validation import validate_values


def override_pairs(overrides: list[str]) -> list[tuple[str, str]]:
    """`--section.key value` / `--section.key=value` -> [(section.key, value text)]."""
    pairs, i = [], 0
    while i < len(overrides):
        item = overrides[i]
        if not item.startswith("--"):
            raise ConfigError(f"override {item!r}: expected --section.key VALUE (e.g. --training.lr 1e-5)")
        item = item[2:]
        if "=" in item:
            pairs.append(tuple(item.split("=", 1)))
            i += 1
        else:
            if i + 1 >= len(overrides):
                raise ConfigError(f"override --{item}: missing value (e.g. --{item} VALUE)")
            pairs.append((item, overrides[i + 1]))
            i += 2
    return pairs


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply `--section.key value` / `--section.key=value` pairs (values parsed as YAML)."""
    for dotted, text in override_pairs(overrides):
        parts = dotted.split(".")
        # model.hf_config is the free-form config.json dict: its keys are deeper, nested ones too
        # (--model.hf_config.text_config.hidden_size).
        free_form = len(parts) >= 3 and parts[:2] == ["model", "hf_config"]
        if len(parts) != 2 and not free_form:
            raise ConfigError(f"override --{dotted}: expected exactly --section.key (or --model.hf_config.KEY[.KEY]), "
                              f"sections: {', '.join(SECTIONS)}")
        section, key = parts[:2]
        if section not in SECTIONS:
            raise unknown_key(section, "override --", list(SECTIONS))
        section, key = ALIASES.get((section, key), (section, key))  # an override names the setting, any spelling
        target = raw.setdefault(section, {})
        if target is None:
            target = raw[section] = {}
        if free_form:
            for i, inner in enumerate(parts[2:]):
                if target.get(key) is None:
                    target[key] = {}
                if not isinstance(target[key], dict):
                    raise ConfigError(f"override --{dotted}: {'.'.join(parts[:2 + i])} is {target[key]!r}, not a "
                                      "mapping, so it has no key " + inner)
                target, key = target[key], inner
        try:
            target[key] = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"override --{dotted}: {text!r} is not a YAML value ({exc.problem}); quote items with "
                              "braces, e.g. --parallel.fsdp_modules \"['model.layers.{*}']\"") from None
    return raw


def _read_yaml(path: Path, what: str) -> dict:
    if not path.is_file():
        raise ConfigError(f"{what}: file {path} does not exist; check the path "
                          "(relative paths resolve against the current directory)")
    # Trailing blanks mean nothing in a config, but a trailing tab is a YAML syntax error, and configs
    # copied from web pages carry them.
    text = "\n".join(line.rstrip(" \t") for line in path.read_text().splitlines())
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what}: {path} is not valid YAML: {str(exc).replace(chr(10), ' ')}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{what}: {path} must hold a mapping of sections, got {type(data).__name__}")
    return data


ALIASES: dict[tuple[str, str], tuple[str, str]] = {
    # MindSpeed-MM fsdp2_config.yaml names that differ from ours.
    ("parallel", "sharding_size"): ("parallel", "fsdp_size"),
    ("parallel", "sub_modules_to_wrap"): ("parallel", "fsdp_modules"),
    # Keys that moved: the chunk size is no op backend; the op took its registered name.
    ("ops", "loss_chunk_size"): ("training", "loss_chunk_size"),
    ("ops", "cross_entropy"): ("ops", "linear_cross_entropy"),
    # MindSpeed-LLM keeps the data loader's settings under training:.
    ("training", "dataloader_num_workers"): ("data", "dataloader_num_workers"),
    ("training", "disable_shuffling"): ("data", "disable_shuffling"),
    ("training", "dataloader_drop_last"): ("data", "dataloader_drop_last"),
}
"""(section, key) another spelling writes -> (section, key) of the schema."""
EITHER_PLACE = {("training", "dataloader_num_workers"), ("training", "disable_shuffling"),
                ("training", "dataloader_drop_last")}
"""Keys that may stand in either section but not in both, even with equal values (one place to read)."""


def _merge_fsdp2_file(raw_parallel: dict, base_dir: Path) -> dict:
    """The keys of a MindSpeed-MM style fsdp2 yaml named by parallel.fsdp2_config, merged inline."""
    raw_parallel = dict(raw_parallel)
    fsdp2_path = raw_parallel.get("fsdp2_config")
    if fsdp2_path is None:
        return raw_parallel
    if not isinstance(fsdp2_path, str):
        raise ConfigError(f"parallel.fsdp2_config: expected a path string, got {fsdp2_path!r}")
    path = Path(fsdp2_path)
    if not path.is_absolute():
        path = base_dir / path
    if not path.is_file():
        raise ConfigError(f"parallel.fsdp2_config: file {path} does not exist "
                          "(a relative path resolves against the directory of the config file)")
    external = _read_yaml(path, "parallel.fsdp2_config")
    for key, value in external.items():
        if key in raw_parallel and raw_parallel[key] != value:
            raise ConfigError(f"parallel.{key}: set both inline ({raw_parallel[key]!r}) and in {path} "
                              f"({value!r}); keep one")
        raw_parallel[key] = value
    return raw_parallel


def _apply_aliases(raw: dict) -> dict:
    """Move every aliased key to its schema place; both spellings with different values is an error."""
    for (section, alias), (to_section, ours) in ALIASES.items():
        source = raw.get(section)
        if not isinstance(source, dict) or alias not in source:
            continue
        value = source.pop(alias)
        if (section, alias) == ("parallel", "sharding_size") and value is None:
            value = 1  # MindSpeed-MM: None means no sharding
        target = raw.setdefault(to_section, {})
        if target is None:
            target = raw[to_section] = {}
        if not isinstance(target, dict):
            raise ConfigError(f"{to_section}: expected a mapping of keys, got {target!r}")
        if ours in target and (target[ours] != value or (section, alias) in EITHER_PLACE):
            raise ConfigError(f"{section}.{alias} ({value!r}) and {to_section}.{ours} ({target[ours]!r}) name the same "
                              f"setting; keep only {to_section}.{ours}")
        target[ours] = value
    return raw


def _free_section(raw: Any, section: str) -> dict:
    """A section whose keys its consumer checks (task: the model package's task options)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{section}: expected a mapping of keys, got {raw!r}")
    return dict(raw)


def config_from_dict(raw: dict, base_dir: str | Path = ".", source: str | None = None,
                     overrides: list[str] | None = None) -> Config:
    """`overrides` (`--section.key VALUE`) are applied last, over the file and its fsdp2 file: the
    command line wins, whichever spelling either side uses."""
    raw = dict(raw)
    pairs = override_pairs(list(overrides or []))
    # The fsdp2 file an override names is the one merged; every other override lands after the merge.
    first = [f"--{k}={v}" for k, v in pairs if k == "parallel.fsdp2_config"]
    rest = [f"--{k}={v}" for k, v in pairs if k != "parallel.fsdp2_config"]
    raw = apply_overrides(raw, first)
    for key in raw:
        if key not in SECTIONS:
            raise unknown_key(key, "", list(SECTIONS))
    if raw.get("parallel") is not None:
        if not isinstance(raw["parallel"], dict):
            raise ConfigError(f"parallel: expected a mapping of keys, got {raw['parallel']!r}")
        raw["parallel"] = _merge_fsdp2_file(raw["parallel"], Path(base_dir))
    raw = _apply_aliases({k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()})
    raw = apply_overrides(raw, rest)
    sections = {name: _free_section(raw.get(name), name) if cls is dict else build_section(cls, raw.get(name), name)
                for name, cls in ((n, typing.get_type_hints(Config)[n]) for n in SECTIONS)}
    cfg = Config(**sections, source=source)
    validate_values(cfg)
    return cfg


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    path = Path(path)
    raw = _read_yaml(path, "config")
    return config_from_dict(raw, base_dir=path.parent, source=str(path), overrides=overrides)

