"""Wan 2.1 / 2.2 for shardzoo: the video DiT (diffusers WanTransformer3DModel) rewritten on the core ops."""

from .configuration_wan import WanConfig
from .modeling_wan import WanTransformer3DModel
from .spec import ADAPTER, init_fn, tiny_config

__all__ = ["ADAPTER", "WanConfig", "WanTransformer3DModel", "init_fn", "tiny_config"]
