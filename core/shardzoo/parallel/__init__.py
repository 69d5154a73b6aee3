"""Parallelism applied from outside the model: mesh, tensor parallel (parallel/tensor.py), expert parallel,
context parallel, recompute, FSDP2."""

from .context import apply_context_parallel
from .expert import apply_expert_parallel
from .fsdp import apply_fsdp, mixed_precision_policy, to_dtype
from .mesh import Meshes, build_data_parallel_mesh, build_meshes, gather_objects, init_distributed, shutdown_distributed
from .patterns import match_modules, pattern_to_regex
from .recompute import apply_recompute

__all__ = ["apply_context_parallel", "apply_expert_parallel", "Meshes", "build_meshes",
           "apply_fsdp", "mixed_precision_policy", "to_dtype", "build_data_parallel_mesh", "gather_objects",
           "init_distributed", "shutdown_distributed",
           "match_modules", "pattern_to_regex", "apply_recompute"]
