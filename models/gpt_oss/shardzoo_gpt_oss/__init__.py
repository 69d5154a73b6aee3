"""GPT-OSS for shardzoo: attention sinks, alternating sliding/full layers, YaRN, top-4 MoE with
clamped SwiGLU experts on the core grouped-GEMM MoE, MXFP4 checkpoint import."""

from .modeling_gpt_oss import GptOssForCausalLM, GptOssModel
from .spec import SPEC, tiny_config

__all__ = ["SPEC", "GptOssForCausalLM", "GptOssModel", "tiny_config"]
