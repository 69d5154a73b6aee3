"""The Wan DiT config: diffusers' `WanTransformer3DModel` config.json fields, as plain attributes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Optional


@dataclass
class WanConfig:
    patch_size: tuple = (1, 2, 2)
    num_attention_heads: int = 40
    attention_head_dim: int = 128
    in_channels: int = 16
    out_channels: Optional[int] = 16
    text_dim: int = 4096
    freq_dim: int = 256
    ffn_dim: int = 13824
    num_layers: int = 40
    cross_attn_norm: bool = True
    qk_norm: Optional[str] = "rms_norm_across_heads"
    eps: float = 1e-6
    image_dim: Optional[int] = None
    added_kv_proj_dim: Optional[int] = None
    rope_max_seq_len: int = 1024
    pos_embed_seq_len: Optional[int] = None
    tie_word_embeddings: bool = False  # no embeddings: keeps the adapter's tie logic out

    @classmethod
    def from_dict(cls, raw: dict) -> "WanConfig":
        """diffusers' config.json: `_class_name` / `_diffusers_version` and other `_` keys are metadata."""
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in raw.items() if not k.startswith("_")}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"Wan config: unknown key(s) {unknown}; expected diffusers WanTransformer3DModel "
                             f"fields ({', '.join(sorted(known))})")
        data["patch_size"] = tuple(data.get("patch_size", cls.patch_size))
        return cls(**data)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["patch_size"] = list(self.patch_size)
        return {"_class_name": "WanTransformer3DModel", **out}
