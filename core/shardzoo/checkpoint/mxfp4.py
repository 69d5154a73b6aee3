"""MXFP4 expert weights of the released GPT-OSS checkpoints, dequantised on import.

Format (OCP MX; model_facts §4): 32 consecutive elements along the input dim share one E8M0
scale (value 2^(s - 127)); each uint8 of `*_blocks` [E, out, in/32, 16] holds two E2M1 values,
the low nibble first. The dequantised [E, out, in] tensor is transposed to transformers' [E, in,
out] layout, the one our experts use. Export writes the dequantised (BF16 layout) tensor: a
trained model is not re-quantised.
"""

from __future__ import annotations

from typing import Iterator

import torch

from .convert_ops import ConvertOp, Items, Pattern, _group_stage, _key_group, _values
from .lazy_tensors import materialize

FP4_VALUES = (+0.0, +0.5, +1.0, +1.5, +2.0, +3.0, +4.0, +6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0)


def dequantize_mxfp4(blocks: torch.Tensor, scales: torch.Tensor, dtype: torch.dtype = torch.float32,
                     rows_per_chunk: int = 1 << 16) -> torch.Tensor:
    """blocks uint8 [..., G, 16], scales uint8 [..., G] -> [..., G * 32] in `dtype`.

    Worked in row chunks so the fp32 intermediates of a 20B expert stack stay small."""
    if blocks.dtype != torch.uint8 or scales.dtype != torch.uint8:
        raise ValueError(f"MXFP4 blocks and scales must be uint8, got {blocks.dtype} and {scales.dtype}")
    if blocks.shape[:-1] != scales.shape or blocks.shape[-1] != 16:
        raise ValueError(f"MXFP4 blocks {tuple(blocks.shape)} do not fit scales {tuple(scales.shape)}: expected "
                         "blocks [..., G, 16] with scales [..., G]")
    lut = torch.tensor(FP4_VALUES, dtype=torch.float32)
    lead, groups = blocks.shape[:-2], blocks.shape[-2]
    flat_blocks = blocks.reshape(-1, groups, 16)
    flat_scales = scales.reshape(-1, groups).to(torch.int32) - 127
    out = torch.empty(flat_blocks.shape[0], groups * 32, dtype=dtype)
    for start in range(0, flat_blocks.shape[0], rows_per_chunk):
        b = flat_blocks[start:start + rows_per_chunk].long()
        values = torch.stack((lut[b & 0x0F], lut[b >> 4]), dim=-1).reshape(b.shape[0], groups, 32)
        values = torch.ldexp(values, flat_scales[start:start + rows_per_chunk, :, None])
        out[start:start + rows_per_chunk] = values.reshape(b.shape[0], groups * 32).to(dtype)
    return out.reshape(*lead, groups * 32)


class DequantizeMxfp4(ConvertOp):
    """HF `{x}_blocks` + `{x}_scales` [E, out, ...] -> our `{x}` [E, in, out] on import; checkpoints
    already in the BF16 layout pass through unchanged. Export is the identity (BF16 layout)."""

    def __init__(self, blocks: str, scales: str, ours: str, dtype: torch.dtype = torch.float32):
        self.blocks, self.scales, self.ours, self.dtype = blocks, scales, ours, dtype

    def from_hf(self, items: Items, config) -> Iterator[tuple[str, torch.Tensor]]:
        blocks, scales, ours = Pattern(self.blocks), Pattern(self.scales), Pattern(self.ours)

        def match(key):
            for slot, pattern in enumerate((blocks, scales)):
                group = _key_group(pattern, key)
                if group is not None:
                    return group, slot
            return None

        def emit(group, tensors):
            weight = dequantize_mxfp4(materialize(tensors[0]), materialize(tensors[1]), self.dtype)
            yield ours.format(_values(group)), weight.transpose(1, 2).contiguous()
        return _group_stage(items, match, lambda g: 2, emit, f"DequantizeMxfp4({self.ours!r})")

    def to_hf(self, items: Items, config) -> Iterator[tuple[str, torch.Tensor]]:
        return iter(items)
