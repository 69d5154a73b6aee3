"""Fused ops, one file each: a pure-torch reference plus backends behind one dispatch.

Importing this package registers every op; `bind_ops` applies the `ops:` config section.
"""

from .attention import CoreAttention, attention, document_ids_from_cu_seqlens, document_ids_from_position_ids
from .clipped_swiglu import clipped_swiglu
from .dispatch import OPS, Backend, Op, bind_ops, ops_table
from .grouped_mm import grouped_mm
from .linear_cross_entropy import IGNORE_INDEX, linear_cross_entropy
from .moe_permute import moe_permute, moe_unpermute
from .rms_norm import RMSNorm, rms_norm
from .rotary import rope_cos_sin, rope_inv_freq, rotary, yarn_inv_freq
from .swiglu import swiglu

__all__ = [
    "OPS", "Backend", "Op", "bind_ops", "ops_table", "IGNORE_INDEX",
    "attention", "CoreAttention", "document_ids_from_cu_seqlens", "document_ids_from_position_ids",
    "linear_cross_entropy", "RMSNorm", "rms_norm", "rotary", "rope_cos_sin", "rope_inv_freq", "yarn_inv_freq",
    "swiglu", "clipped_swiglu", "grouped_mm", "moe_permute", "moe_unpermute",
]
