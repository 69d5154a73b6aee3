"""The Wan DiT config: diffusers' `WanTransformer3DModel` config.json fields, as plain attributes.

The original Wan config.json (`_class_name: WanModel`: dim, num_heads, in_dim, ...) is read too and
translated; a saved config is always diffusers'.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Optional

from shardzoo.errors import ConfigError

# Original WanModel config keys that carry no choice for the DiT we build (text_len is the data's).
_ORIGINAL_FIXED = {"window_size": [-1, -1], "patch_size": [1, 2, 2]}
_ORIGINAL_SKIPPED = ("text_len", "_diffusers_version", "_class_name", "model_type")


def from_original(raw: dict) -> dict:
    """Original Wan `WanModel` config.json -> diffusers field names (docs/model_facts.md §6)."""
    if raw.get("model_type", "t2v") not in ("t2v", "ti2v"):
        raise ConfigError(f"original Wan config: model_type {raw['model_type']!r} is read for t2v and ti2v only "
                          "(an original i2v config does not say whether the CLIP branch exists: Wan2.1 has it, "
                          "Wan2.2 not); for I2V give the diffusers config.json (image_dim, added_kv_proj_dim), "
                          "e.g. models/wan/configs/wan2.1-i2v-14b; FLF2V and VACE are not implemented")
    for key, value in _ORIGINAL_FIXED.items():
        if key in raw and list(raw[key]) != value:
            raise ConfigError(f"original Wan config: {key}={raw[key]} is not supported (every release "
                                      f"uses {value})")
    names = {"dim": None, "num_heads": "num_attention_heads", "in_dim": "in_channels", "out_dim": "out_channels",
             "ffn_dim": "ffn_dim", "freq_dim": "freq_dim", "text_dim": "text_dim", "num_layers": "num_layers",
             "eps": "eps", "cross_attn_norm": "cross_attn_norm", "qk_norm": "qk_norm"}
    unknown = sorted(set(raw) - set(names) - set(_ORIGINAL_FIXED) - set(_ORIGINAL_SKIPPED))
    if unknown:
        raise ConfigError(f"original Wan config: unknown key(s) {unknown}")
    out = {ours: raw[theirs] for theirs, ours in names.items() if ours and theirs in raw}
    if "dim" in raw:
        out["attention_head_dim"] = raw["dim"] // raw["num_heads"]
    if "qk_norm" in out:
        out["qk_norm"] = "rms_norm_across_heads" if out["qk_norm"] else None
    return out


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
        """diffusers' config.json (`_class_name` / `_diffusers_version` and other `_` keys are metadata),
        or the original Wan one (`_class_name: WanModel`)."""
        if raw.get("_class_name") == "WanModel":
            raw = from_original(raw)
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in raw.items() if not k.startswith("_")}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"Wan config: unknown key(s) {unknown}; expected diffusers WanTransformer3DModel "
                             f"fields ({', '.join(sorted(known))})")
        data["patch_size"] = tuple(data.get("patch_size", cls.patch_size))
        return cls(**data)

    def to_dict(self) -> dict:
        """diffusers' config.json."""
        out = asdict(self)
        del out["tie_word_embeddings"]
        out["patch_size"] = list(self.patch_size)
        return {"_class_name": "WanTransformer3DModel", **out}

    def save_pretrained(self, folder: str) -> None:
        """config.json in diffusers' format (checkpoints and exports load in diffusers)."""
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "config.json").write_text(json.dumps(self.to_dict(), indent=2) + "\n")
