"""Checkpoints: DCP save/resume (manager.py), HF safetensors import (hf_weights.py) and export
(export.py), and the converter ops that map HF layouts to ours (convert_ops.py, adapter.py)."""

from .adapter import StateDictAdapter
from .convert_ops import Concat, FusedQKV, ImportOnly, Interleave, Rename, RenamePrefix, Split, Stack, Transpose
from .hf_weights import iter_safetensors, safetensors_files
from .manifest import CheckpointError
from .mxfp4 import DequantizeMxfp4, dequantize_mxfp4

__all__ = ["CheckpointError", "Concat", "DequantizeMxfp4", "dequantize_mxfp4",
           "FusedQKV", "ImportOnly", "Interleave", "Rename", "RenamePrefix", "Split", "Stack", "StateDictAdapter",
           "Transpose", "iter_safetensors", "safetensors_files"]
