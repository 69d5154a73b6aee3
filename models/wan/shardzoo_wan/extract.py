"""Offline feature extraction for Wan training: video-caption rows -> latents and text states in
safetensors shards, so training runs the DiT alone (what large runs do).

    python -m shardzoo_wan.extract --rows data/video_sample.json --vae VAE_DIR --text-encoder UMT5_DIR \\
        --tokenizer TOKENIZER_DIR --out FEATURES_DIR [--frames 81 --height 480 --width 832 --stride 1]

For size buckets (clips of different sizes and lengths) give `--buckets 81x480x832 81x832x480 ...` instead
of --frames/--height/--width: each row is written at the bucket nearest its shape (buckets.py).
For the image-to-video DiTs add `--image-to-video` (the first frame's condition latents), and for
Wan2.1 I2V also `--image-encoder CLIP_DIR --image-processor PROCESSOR_DIR` (its CLIP image tokens).

Rows are {"video": frame folder or video file (relative to the rows file), "caption": text} (rows.py). Each
shard holds, per row i, `{i}.latents` [C, T', H', W'] (normalised, fp32) and `{i}.text` [n, d]
(the true tokens' umT5 states; training zero-pads them to text_len); with --image-to-video also
`{i}.condition` [C, T', H', W'] (the first frame then zero frames, encoded and normalised), and with an
image encoder `{i}.image` [L, d] (CLIP's penultimate hidden states of the first frame). index.json lists
the rows, their shards and the settings; shards are written to a temporary name and renamed when
complete, so an interrupted run leaves no half shard behind and a rerun skips the finished ones (a
shard records the settings it was written with: a rerun with other settings is refused).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from shardzoo.errors import DataError

from .buckets import Bucket, assign_buckets, parse_buckets
from .encoders import TextEncoder, VideoEncoder, latent_shape, temporal_factor
from .image_to_video import ImageEncoder
from .rows import read_video_rows
from .video import load_clip

EMPTY_TEXT = "empty_text.safetensors"


def extract(rows_path: Path, out: Path, video: VideoEncoder, text: TextEncoder, *, frames: int = 81, height: int = 480,
            width: int = 832, stride: int = 1, shard_size: int = 64, image_to_video: bool = False,
            image: ImageEncoder | None = None, buckets: list[Bucket] | None = None) -> dict:
    rows, _ = read_video_rows(rows_path)
    out.mkdir(parents=True, exist_ok=True)
    if buckets:
        rows, row_buckets, _ = assign_buckets(rows, buckets, stride)
        sizes = [buckets[b] for b in row_buckets]
        settings = {"buckets": [str(b) for b in buckets], "stride": stride, "text_len": text.text_len}
    else:
        sizes, settings = [Bucket(frames, height, width)] * len(rows), {"frames": frames, "height": height,
                                                                         "width": width, "stride": stride,
                                                                         "text_len": text.text_len}
    if image_to_video:
        settings["mask_channels"] = temporal_factor(video.vae.config)
    if image is not None:
        if not image_to_video:
            raise ValueError("an image encoder's tokens go with --image-to-video (Wan2.1 I2V)")
        settings["image_tokens"] = True
    index = {"rows": len(rows), **settings, "shards": []}
    for start in range(0, len(rows), shard_size):
        name = f"features_{start // shard_size:05d}.safetensors"
        index["shards"].append({"file": name, "first": start, "count": min(shard_size, len(rows) - start)})
        if (out / name).is_file():  # finished by an earlier run, with these settings
            _check_settings(out / name, settings)
            continue
        tensors = {}
        for i in range(start, min(start + shard_size, len(rows))):
            row, size = rows[i], sizes[i]
            clip = load_clip(row.video, size.frames, size.height, size.width, stride)[None]
            tensors[f"{i}.latents"] = video(clip)[0].contiguous()
            states, lengths = text.encode([row.caption])
            tensors[f"{i}.text"] = states[0, :int(lengths[0])].float().contiguous()  # the padding is zeros
            if image_to_video:
                tensors[f"{i}.condition"] = video.condition(clip)[0].contiguous()
            if image is not None:
                tensors[f"{i}.image"] = image(clip[:, :, 0])[0].contiguous()
        tmp = out / f".{name}.tmp"
        save_file(tensors, str(tmp), metadata={"settings": json.dumps(settings, sort_keys=True)})
        os.replace(tmp, out / name)
    # The empty prompt's encoding, for text dropout (task.text_drop_prob): true tokens only, as each row's.
    states, lengths = text.encode([""])
    save_file({"text": states[0, :int(lengths[0])].float().contiguous()}, str(out / EMPTY_TEXT))
    if buckets:  # each row's bucket and each bucket's latents, for the loader's steps and `shardzoo plan`
        index["row_buckets"] = row_buckets
        index["latent_shapes"] = [list(latent_shape(video.vae.config, b.frames, b.height, b.width)) for b in buckets]
    elif rows:  # what a row's tensors are, for `shardzoo plan` and the trainer's checks without opening a shard
        with safe_open(str(out / index["shards"][0]["file"]), framework="pt") as f:
            first = index["shards"][0]["first"]
            index["latent_shape"] = list(f.get_slice(f"{first}.latents").get_shape())
            if image is not None:
                index["image_shape"] = list(f.get_slice(f"{first}.image").get_shape())
    (out / "index.json").write_text(json.dumps(index, indent=1))
    return index


def _check_settings(shard: Path, settings: dict) -> None:
    with safe_open(str(shard), framework="pt") as f:
        written = (f.metadata() or {}).get("settings")
    if written is None:
        # Shards from before the settings were recorded: T2V ones, whose sizes index.json names.
        index_path = shard.parent / "index.json"
        old = json.loads(index_path.read_text()) if index_path.is_file() else {}
        same = all(old.get(k) == v for k, v in settings.items())
    else:
        same = json.loads(written) == settings
    if not same:
        raise DataError(f"{shard}: written with other settings ({written or 'an earlier extraction'}) than this run's "
                        f"{json.dumps(settings, sort_keys=True)}; extract into a new --out folder")


def _padded(states: torch.Tensor, text_len: int) -> torch.Tensor:
    padded = states.new_zeros(text_len, states.shape[-1])
    padded[:len(states)] = states[:text_len]
    return padded


class FeatureStore:
    """The rows of an extraction folder, read one tensor at a time (a shard is never loaded whole)."""

    def __init__(self, folder: Path, text_len: int | None = None):
        self.folder = Path(folder)
        index_path = self.folder / "index.json"
        if not index_path.is_file():
            raise DataError(f"{index_path} does not exist; write the features with python -m "
                                    "shardzoo_wan.extract (an interrupted extraction writes index.json last)")
        self.index = json.loads(index_path.read_text())
        self.text_len = text_len or self.index["text_len"]
        missing = [s["file"] for s in self.index["shards"] if not (self.folder / s["file"]).is_file()]
        if missing:
            raise DataError(f"{self.folder}: shard(s) {missing[:3]} listed in index.json are missing; rerun "
                                    "the extraction (finished shards are skipped)")

    def __len__(self) -> int:
        return self.index["rows"]

    def _shard(self, i: int) -> Path:
        if not 0 <= i < len(self):
            raise IndexError(f"{self.folder}: row {i} of {len(self)}")
        return self.folder / next(s for s in self.index["shards"] if s["first"] <= i < s["first"] + s["count"])["file"]

    def latent_shapes(self) -> list[tuple[int, ...]]:
        """[C, T', H', W'] per bucket (in bucket order), or of the extraction's one video size."""
        if "latent_shapes" in self.index:
            return [tuple(shape) for shape in self.index["latent_shapes"]]
        return [self.latent_shape()]

    def row_buckets(self) -> np.ndarray | None:
        """Each row's bucket index; None for an extraction of one size."""
        return np.asarray(self.index["row_buckets"]) if "row_buckets" in self.index else None

    def latent_shape(self) -> tuple[int, ...]:
        """[C, T', H', W'] of the latents (the largest bucket's, with buckets)."""
        if "latent_shapes" in self.index:
            return max(self.latent_shapes(), key=lambda shape: int(np.prod(shape)))
        if "latent_shape" in self.index:
            return tuple(self.index["latent_shape"])
        with safe_open(str(self._shard(0)), framework="pt") as f:
            return tuple(f.get_slice("0.latents").get_shape())

    @property
    def mask_channels(self) -> int:
        """The image-to-video mask's channels (the VAE's temporal factor); 0 without --image-to-video."""
        return self.index.get("mask_channels", 0)

    @property
    def image_tokens(self) -> bool:
        return bool(self.index.get("image_tokens"))

    def row(self, i: int, fields: tuple[str, ...] = ("latents", "text")) -> dict:
        """Row i's `fields` (latents, text zero-padded to text_len, condition, image)."""
        with safe_open(str(self._shard(i)), framework="pt") as f:
            found = {name: f.get_tensor(f"{i}.{name}") for name in fields}
        if "text" in found:
            found["text"] = _padded(found["text"], self.text_len)
        return found

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(latents, text states zero-padded to text_len) of row i."""
        found = self.row(i)
        return found["latents"], found["text"]

    def empty_text(self) -> torch.Tensor:
        """The empty prompt's states zero-padded to text_len [text_len, d]; DataError when the extraction
        predates them."""
        path = self.folder / EMPTY_TEXT
        if not path.is_file():
            raise DataError(f"{path} does not exist (an extraction before text dropout); rerun python -m "
                            "shardzoo_wan.extract with the same --out: it keeps the finished shards and adds it")
        with safe_open(str(path), framework="pt") as f:
            return _padded(f.get_tensor("text"), self.text_len)


def load_features(folder: Path, i: int, text_len: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(latents, text states zero-padded to text_len) of row i."""
    return FeatureStore(folder, text_len)[i]


def main(argv: list[str] | None = None) -> None:
    from diffusers import AutoencoderKLWan
    from transformers import AutoTokenizer, UMT5EncoderModel

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=Path, required=True)
    parser.add_argument("--vae", required=True, help="folder of the Wan VAE (diffusers AutoencoderKLWan)")
    parser.add_argument("--text-encoder", required=True, help="folder of the umT5 encoder (transformers)")
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--frames", type=int, help="frames per clip, 4n + 1 (default 81)")
    parser.add_argument("--height", type=int, help="default 480")
    parser.add_argument("--width", type=int, help="default 832")
    parser.add_argument("--buckets", nargs="+", metavar="FxHxW",
                        help="several sizes instead of --frames/--height/--width: 81x480x832 81x832x480 49x480x832")
    parser.add_argument("--stride", type=int, default=1)
    parser.add_argument("--text-len", type=int, default=512)
    parser.add_argument("--shard-size", type=int, default=64)
    parser.add_argument("--image-to-video", action="store_true",
                        help="also the first frame's condition latents (Wan2.1 I2V, Wan2.2 I2V-A14B)")
    parser.add_argument("--image-encoder", help="Wan2.1 I2V: folder of the CLIP vision encoder (transformers "
                        "CLIPVisionModel, the repo's image_encoder/); writes its image tokens")
    parser.add_argument("--image-processor", help="with --image-encoder: the repo's image_processor/ folder")
    args = parser.parse_args(argv)
    given = [f"--{k}" for k in ("frames", "height", "width") if getattr(args, k) is not None]
    if args.buckets and given:
        parser.error(f"--buckets gives the sizes; remove {', '.join(given)}")
    buckets = parse_buckets(args.buckets, "--buckets") if args.buckets else None
    if (args.image_encoder is None) != (args.image_processor is None):
        parser.error("--image-encoder and --image-processor come together")
    if args.image_encoder and not args.image_to_video:
        parser.error("--image-encoder writes Wan2.1 I2V's image tokens: add --image-to-video")
    video = VideoEncoder(AutoencoderKLWan.from_pretrained(args.vae))
    text = TextEncoder(UMT5EncoderModel.from_pretrained(args.text_encoder),
                       AutoTokenizer.from_pretrained(args.tokenizer), args.text_len)
    image = None
    if args.image_encoder:
        from transformers import CLIPVisionModel

        image = ImageEncoder(CLIPVisionModel.from_pretrained(args.image_encoder), args.image_processor)
    sizes = {k: getattr(args, k) for k in ("frames", "height", "width") if getattr(args, k) is not None}
    index = extract(args.rows, args.out, video, text, stride=args.stride, shard_size=args.shard_size,
                    image_to_video=args.image_to_video, image=image, buckets=buckets, **sizes)
    print(f"wrote {index['rows']} rows in {len(index['shards'])} shards to {args.out}")


if __name__ == "__main__":
    import sys

    from shardzoo.cli import run_reporting_user_errors

    sys.exit(run_reporting_user_errors(main))
