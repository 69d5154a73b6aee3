"""Offline feature extraction for Wan training: video-caption rows -> latents and text states in
safetensors shards, so training runs the DiT alone (what large runs do).

    python -m shardzoo_wan.extract --rows data/video_sample.json --vae VAE_DIR --text-encoder UMT5_DIR \\
        --tokenizer TOKENIZER_DIR --out FEATURES_DIR [--frames 81 --height 480 --width 832 --stride 1]

Rows are {"video": frame folder or video file (relative to the rows file), "caption": text} (rows.py). Each
shard holds, per row i, `{i}.latents` [C, T', H', W'] (normalised, fp32) and `{i}.text` [n, d]
(the true tokens' umT5 states; training zero-pads them to text_len). index.json lists the rows,
their shards and the settings; shards are written to a temporary name and renamed when complete,
so an interrupted run leaves no half shard behind and a rerun skips the finished ones.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from shardzoo.errors import DataError

from .encoders import TextEncoder, VideoEncoder
from .rows import read_video_rows
from .video import load_clip

EMPTY_TEXT = "empty_text.safetensors"


def extract(rows_path: Path, out: Path, video: VideoEncoder, text: TextEncoder, *, frames: int, height: int,
            width: int, stride: int = 1, shard_size: int = 64) -> dict:
    rows, _ = read_video_rows(rows_path)
    out.mkdir(parents=True, exist_ok=True)
    index = {"rows": len(rows), "frames": frames, "height": height, "width": width, "stride": stride,
             "text_len": text.text_len, "shards": []}
    for start in range(0, len(rows), shard_size):
        name = f"features_{start // shard_size:05d}.safetensors"
        index["shards"].append({"file": name, "first": start, "count": min(shard_size, len(rows) - start)})
        if (out / name).is_file():
            continue  # finished by an earlier run
        tensors = {}
        for i in range(start, min(start + shard_size, len(rows))):
            row = rows[i]
            clip = load_clip(row.video, frames, height, width, stride)
            tensors[f"{i}.latents"] = video(clip[None])[0].contiguous()
            states, lengths = text.encode([row.caption])
            tensors[f"{i}.text"] = states[0, :int(lengths[0])].float().contiguous()  # the padding is zeros
        tmp = out / f".{name}.tmp"
        save_file(tensors, str(tmp))
        os.replace(tmp, out / name)
    # The empty prompt's encoding, for text dropout (task.text_drop_prob): true tokens only, as each row's.
    states, lengths = text.encode([""])
    save_file({"text": states[0, :int(lengths[0])].float().contiguous()}, str(out / EMPTY_TEXT))
    if rows:  # what a row's latents are, for `shardzoo plan` and the trainer's checks without opening a shard
        with safe_open(str(out / index["shards"][0]["file"]), framework="pt") as f:
            index["latent_shape"] = list(f.get_slice(f"{index['shards'][0]['first']}.latents").get_shape())
    (out / "index.json").write_text(json.dumps(index, indent=1))
    return index


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

    def latent_shape(self) -> tuple[int, ...]:
        """[C, T', H', W'] of the latents (every row has the extraction's one video size)."""
        if "latent_shape" in self.index:
            return tuple(self.index["latent_shape"])
        with safe_open(str(self._shard(0)), framework="pt") as f:
            return tuple(f.get_slice("0.latents").get_shape())

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(latents, text states zero-padded to text_len) of row i."""
        with safe_open(str(self._shard(i)), framework="pt") as f:
            latents, states = f.get_tensor(f"{i}.latents"), f.get_tensor(f"{i}.text")
        return latents, _padded(states, self.text_len)

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
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=832)
    parser.add_argument("--stride", type=int, default=1)
    parser.add_argument("--text-len", type=int, default=512)
    parser.add_argument("--shard-size", type=int, default=64)
    args = parser.parse_args(argv)
    video = VideoEncoder(AutoencoderKLWan.from_pretrained(args.vae))
    text = TextEncoder(UMT5EncoderModel.from_pretrained(args.text_encoder),
                       AutoTokenizer.from_pretrained(args.tokenizer), args.text_len)
    index = extract(args.rows, args.out, video, text, frames=args.frames, height=args.height, width=args.width,
                    stride=args.stride, shard_size=args.shard_size)
    print(f"wrote {index['rows']} rows in {len(index['shards'])} shards to {args.out}")


if __name__ == "__main__":
    main()
