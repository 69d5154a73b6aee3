"""The model's config: config.json (+ model.hf_config) -> the registered package's or transformers'
config object, and the few facts the rest of training reads from it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import yaml

from ..checkpoint import StateDictAdapter
from ..checkpoint.hf_files import HF_DIR
from ..config import Config, ConfigError, resolve_path
from ..registry import ModelSpec, find_spec


def hf_config_dict(cfg: Config) -> dict:
    m = cfg.model
    raw: dict = {}
    if m.model_name_or_path is not None:
        path = resolve_path(m.model_name_or_path) / "config.json"
        if not path.is_file():
            raise ConfigError(f"model.model_name_or_path: {path.parent} has no config.json; point it at the model "
                              "folder, or give a hub id (org/name)")
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ConfigError(f"model.model_name_or_path: {path} is not valid JSON: {exc}") from None
    raw.update(m.hf_config)
    return raw


def make_hf_config(raw: dict, spec: Optional[ModelSpec], trust_remote_code: bool):
    from transformers import AutoConfig

    raw = dict(raw)
    if spec is not None:
        if spec.config_from_dict is not None:
            return spec.config_from_dict(raw)
        raw.pop("model_type", None)
        try:
            return spec.config_class(**raw)
        except Exception as exc:  # noqa: BLE001 - the config's own checks (layer_types vs num_hidden_layers, ...)
            cause = exc.__cause__ or exc  # huggingface_hub's strict dataclasses wrap the validator's error
            raise ConfigError(f"model.hf_config / config.json: {spec.config_class.__name__} refuses it: "
                              f"{' '.join(str(cause).split())}") from None
    model_type = raw.pop("model_type", None)
    if model_type is None:
        raise ConfigError("model.hf_config: no model_type; the AutoModel path needs config.json's model_type "
                          "(or set model.model_id to a registered package)")
    try:
        return AutoConfig.for_model(model_type, trust_remote_code=trust_remote_code, **raw)
    except ValueError as exc:
        if "Unrecognized" not in str(exc) and "unrecognized" not in str(exc):
            raise
        raise ConfigError(f"model: model_type {model_type!r} is served by no installed model package and is unknown "
                          "to transformers; install its package (shardzoo models lists them), set model.model_id, or "
                          "ship its code in the model folder (auto_map in config.json) with "
                          "model.trust_remote_code: true") from None


def _remote_code_config(cfg: Config, raw: dict):
    """The config of a model whose code lives in its folder (config.json's auto_map), if trusted."""
    from transformers import AutoConfig

    m = cfg.model
    if not m.trust_remote_code:
        raise ConfigError(f"model.trust_remote_code: {m.model_name_or_path}/config.json maps model_type "
                          f"{raw.get('model_type')!r} to code in the model folder (auto_map); set "
                          "model.trust_remote_code: true to run that code, or use a registered model package")
    if m.model_name_or_path is None:
        raise ConfigError("model.model_name_or_path: remote code (auto_map) is loaded from the model folder; give "
                          "the folder that holds config.json and the modeling file")
    return AutoConfig.from_pretrained(str(resolve_path(m.model_name_or_path)), trust_remote_code=True, **m.hf_config)


def resolve_model(cfg: Config) -> tuple[Optional[ModelSpec], Any]:
    """(registered spec or None for the AutoModel path, HF config) - cheap, before any weights."""
    raw = hf_config_dict(cfg)
    spec = find_spec(cfg.model.model_id, raw)
    if spec is None and "auto_map" in raw:
        return None, _remote_code_config(cfg, raw)
    return spec, make_hf_config(raw, spec, cfg.model.trust_remote_code)


def checkpoint_model(checkpoint: Path) -> tuple[StateDictAdapter, Any]:
    """(adapter, config object) of the model a checkpoint was trained as, from its config.yaml and hf/."""
    raw = json.loads((checkpoint / HF_DIR / "config.json").read_text())
    run = yaml.safe_load((checkpoint / "config.yaml").read_text()) or {}
    spec = find_spec((run.get("model") or {}).get("model_id"), raw)
    # The config was already used (and trusted or not) by the training run; export never runs remote code:
    # a remote-code model's names are already HF's, so its adapter needs only the plain fields.
    if spec is None and "auto_map" in raw:
        from transformers import PretrainedConfig

        return StateDictAdapter(), PretrainedConfig(**{k: v for k, v in raw.items() if k != "model_type"})
    return (spec.adapter if spec else StateDictAdapter()), make_hf_config(raw, spec, trust_remote_code=False)


def text_config(hf_config):
    """The language model's config (a vision-language config nests it; a text config is its own)."""
    return hf_config.get_text_config() if hasattr(hf_config, "get_text_config") else hf_config


def check_vocab(hf_config, tokenizer, tokenizer_path: str) -> None:
    vocab_size = text_config(hf_config).vocab_size
    if len(tokenizer) > vocab_size:
        raise ConfigError(f"model.tokenizer_name_or_path: the tokenizer at {tokenizer_path} has {len(tokenizer)} "
                          f"tokens but the model's vocab_size is {vocab_size}; use the model's tokenizer "
                          "or raise vocab_size")

