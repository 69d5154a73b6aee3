"""The `attention` op: one reference (reference.py) and a backend per file, sharing one visibility rule
(masks.py): sdpa (CPU, CUDA), flex (CUDA: FlexAttention for windows, documents and sinks), npu
(torch_npu.npu_fusion_attention). Importing the package registers every backend."""

from . import flex, npu  # noqa: F401  (register the CUDA and NPU backends)
from .masks import attention_mask, document_ids_from_cu_seqlens, document_ids_from_position_ids, visible
from .reference import CoreAttention, attention, attention_reference
from .sdpa import attention_sdpa, fastest_sdpa

__all__ = ["CoreAttention", "attention", "attention_mask", "attention_reference", "attention_sdpa",
           "document_ids_from_cu_seqlens", "document_ids_from_position_ids", "fastest_sdpa", "visible"]
