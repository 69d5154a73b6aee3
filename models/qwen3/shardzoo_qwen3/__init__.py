"""shardzoo-qwen3: Qwen3 dense and Qwen3-MoE models on the shardzoo core."""

from .modeling_qwen3 import Qwen3ForCausalLM, Qwen3Model
from .modeling_qwen3_moe import Qwen3MoeForCausalLM
from .spec import MOE_SPEC, SPEC, moe_tiny_config, tiny_config

__all__ = ["Qwen3ForCausalLM", "Qwen3Model", "Qwen3MoeForCausalLM", "SPEC", "MOE_SPEC", "tiny_config",
           "moe_tiny_config"]
