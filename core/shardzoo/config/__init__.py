"""The run's config: schema (schema.py), typed reading (coerce.py), files and overrides (loading.py),
checks (validation.py). Errors are shardzoo.errors.ConfigError, re-exported here."""

from ..errors import ConfigError
from .coerce import build_section
from .loading import ALIASES, apply_overrides, config_from_dict, load_config
from .schema import (
                     CONVERSATIONS,
                     OP_BACKEND_AUTO,
                     PRETRAIN_TEXT,
                     SECTIONS,
                     Config,
                     DataConfig,
                     DtypeName,
                     ModelConfig,
                     OpsConfig,
                     ParallelConfig,
                     TrainingConfig,
)
from .validation import resolve_path, validate_paths, validate_tokenizer_path, validate_values

__all__ = ["ALIASES", "CONVERSATIONS", "Config", "ConfigError", "DataConfig", "DtypeName", "ModelConfig",
           "OP_BACKEND_AUTO", "OpsConfig", "PRETRAIN_TEXT", "ParallelConfig", "SECTIONS", "TrainingConfig",
           "apply_overrides", "build_section", "config_from_dict", "load_config", "resolve_path", "validate_paths",
           "validate_tokenizer_path", "validate_values"]
