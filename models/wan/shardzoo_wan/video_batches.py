"""What a Wan training step reads: rows of extracted features or of clips, and the micro-batch they make.

Each sample carries its draw key's generator seed (sample_seed), so its sigma, noise and text
dropout are the same whatever the world size, batch split or context-parallel degree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
from shardzoo.config import resolve_path
from shardzoo.data.loader import TensorFields
from shardzoo.errors import DataError


def sample_seed(seed: int, key: int) -> int:
    """The generator seed of one sample draw (training seed x draw key), well mixed, < 2^63."""
    return int(np.random.SeedSequence([seed, int(key)]).generate_state(1, np.uint64)[0] >> np.uint64(1))


@dataclass
class VideoBatch(TensorFields):
    seeds: torch.Tensor
    """[B] int64: each sample's generator seed (sample_seed)."""
    weights: torch.Tensor
    """[B] 1 for a live sample, 0 for a filler of an epoch's last step."""
    tokens_per_sample: int
    """Video tokens of one sample (latent frames x H/2 x W/2)."""
    cp_size: int = 1
    latents: Optional[torch.Tensor] = None
    """[B, C, T', H', W'] normalised VAE latents (features)."""
    text: Optional[torch.Tensor] = None
    """[B, text_len, d] umT5 states, zero-padded (features)."""
    clips: Optional[torch.Tensor] = None
    """[B, 3, T, H, W] in [-1, 1] (online)."""
    prompts: Optional[list[str]] = None
    """Captions (online)."""
    condition: Optional[torch.Tensor] = None
    """[B, C, T', H', W'] image-to-video: the first frame's condition latents (features)."""
    image: Optional[torch.Tensor] = None
    """[B, L, d] Wan2.1 I2V: CLIP image tokens of the first frame (features)."""

    @property
    def loss_normalizer(self) -> float:
        return float(self.weights.sum()) / self.cp_size

    @property
    def num_tokens(self) -> int:
        return int(self.weights.sum()) * self.tokens_per_sample // self.cp_size

    @property
    def attention_length(self) -> int:
        return self.tokens_per_sample

    def inputs(self) -> dict:
        return {"seeds": self.seeds, "weights": self.weights, "latents": self.latents, "text": self.text,
                "clips": self.clips, "prompts": self.prompts, "condition": self.condition, "image": self.image}


class FeatureRows:
    """Extracted features: per row the latents and text, and what an image-to-video DiT reads too
    (`fields`: condition, image). `tokens`: video tokens per bucket (one entry without buckets); `groups`:
    each row's bucket (None without buckets)."""

    def __init__(self, folder: str, text_len: int, fields: tuple[str, ...] = (), tokens: Sequence[int] = (0,)):
        from .extract import FeatureStore

        self.store = FeatureStore(resolve_path(folder), text_len)
        self.fields = ("latents", "text", *fields)
        self.groups, self.tokens = self.store.row_buckets(), list(tokens)

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, i: int) -> dict:
        return {**self.store.row(i, self.fields), "tokens": self.tokens[0 if self.groups is None else self.groups[i]]}


class ClipRows:
    """Video-caption rows decoded to clips (online encoding), each at its bucket's size (`sizes` [bucket],
    `groups` [row] -> bucket; one size and no groups without buckets)."""

    def __init__(self, rows: list, o, sizes: Sequence, tokens: Sequence[int], groups: Optional[Sequence[int]] = None):
        self.rows, self.o, self.sizes, self.tokens = rows, o, list(sizes), list(tokens)
        self.groups = None if groups is None else np.asarray(groups)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        from .video import load_clip

        row, bucket = self.rows[i], 0 if self.groups is None else int(self.groups[i])
        size = self.sizes[bucket]
        try:
            clip = load_clip(row.video, size.frames, size.height, size.width, self.o.frame_stride)
        except (ValueError, OSError) as exc:
            raise DataError(f"{row.where}: {exc}") from exc
        return {"clip": clip, "caption": row.caption, "tokens": self.tokens[bucket]}


@dataclass
class VideoCollate:
    """Samples of one micro-batch (one size: the loader takes a step from one bucket) -> a VideoBatch (every
    rank of a cp group builds the same one)."""

    seed: int
    cp_size: int = 1

    def __call__(self, samples: list[dict], masked: np.ndarray, keys: np.ndarray) -> VideoBatch:
        tokens = {s["tokens"] for s in samples}
        assert len(tokens) == 1, f"a micro-batch mixes sizes of {sorted(tokens)} tokens"
        batch = VideoBatch(seeds=torch.tensor([sample_seed(self.seed, k) for k in keys], dtype=torch.int64),
                           weights=torch.from_numpy(~np.asarray(masked)).float(),
                           tokens_per_sample=tokens.pop(), cp_size=self.cp_size)
        if "latents" in samples[0]:
            for name in ("latents", "text", "condition", "image"):
                if name in samples[0]:
                    setattr(batch, name, torch.stack([s[name] for s in samples]))
        else:
            batch.clips = torch.stack([s["clip"] for s in samples])
            batch.prompts = [s["caption"] for s in samples]
        return batch
