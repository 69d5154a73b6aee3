"""shardzoo-qwen3: Qwen3 dense models on the shardzoo core."""

from .modeling_qwen3 import Qwen3ForCausalLM, Qwen3Model
from .spec import SPEC, tiny_config

__all__ = ["Qwen3ForCausalLM", "Qwen3Model", "SPEC", "tiny_config"]
