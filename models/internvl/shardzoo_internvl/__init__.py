"""InternVL 3.5 for shardzoo: InternViT (300M and 6B styles), InternVL's pixel shuffle, the mlp1
projector and the Qwen3 language model of shardzoo_qwen3."""

from .modeling_internvl import InternVLForConditionalGeneration, InternVLModel, pixel_shuffle
from .spec import SPEC, tiny_config

__all__ = ["SPEC", "InternVLForConditionalGeneration", "InternVLModel", "pixel_shuffle", "tiny_config"]
