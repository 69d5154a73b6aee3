"""Tiny random stand-ins for the frozen encoders (umT5, the Wan VAE, Wan2.1 I2V's CLIP), built from a seed
in code, so the tiny demo, the tests and the golden loss run offline. They have the real classes and data
paths (tokenise, encode, zero-pad; VAE posterior mean, per-channel normalisation; CLIP's penultimate
states), not the real weights.

    python -m shardzoo_wan.tiny_encoders --out DIR [--tokenizer data/tokenizer]

writes DIR/vae (diffusers AutoencoderKLWan: 4 latent channels, frames (T - 1) / 2 + 1, H / 2, W / 2),
DIR/text_encoder (transformers UMT5EncoderModel, d_model 16), DIR/tokenizer, DIR/image_encoder
(transformers CLIPVisionModel: 32 px, 8 px patches -> 17 tokens of width 20) and DIR/image_processor.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

TEXT_DIM = 16
LATENT_CHANNELS = 4
IMAGE_DIM = 20
# CLIP's published preprocessing (OpenAI's mean and std), at the tiny encoder's 32 px.
IMAGE_PROCESSOR = {"image_processor_type": "CLIPImageProcessor", "do_resize": True, "size": {"shortest_edge": 32},
                   "resample": 3, "do_center_crop": True, "crop_size": {"height": 32, "width": 32},
                   "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
                   "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711]}


def tiny_umt5():
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(0)
    return UMT5EncoderModel(UMT5Config(vocab_size=1024, d_model=TEXT_DIM, d_kv=4, d_ff=32, num_layers=2, num_heads=4,
                                       relative_attention_num_buckets=8))


def tiny_vae():
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    return AutoencoderKLWan(base_dim=8, z_dim=LATENT_CHANNELS, dim_mult=[1, 2], num_res_blocks=1,
                            temperal_downsample=[True], attn_scales=[], latents_mean=[0.1, 0.2, -0.1, 0.0],
                            latents_std=[1.5, 0.8, 1.2, 1.0])


def tiny_clip():
    from transformers import CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(0)
    return CLIPVisionModel(CLIPVisionConfig(hidden_size=IMAGE_DIM, intermediate_size=32, num_hidden_layers=2,
                                            num_attention_heads=2, image_size=32, patch_size=8))


def save_tiny_encoders(out: Path, tokenizer: Path) -> Path:
    """Write the five folders under `out` (skipped when already there) and return `out`."""
    from transformers import AutoTokenizer

    out = Path(out)
    if not (out / "vae" / "config.json").is_file():
        tiny_vae().save_pretrained(out / "vae")
    if not (out / "text_encoder" / "config.json").is_file():
        tiny_umt5().save_pretrained(out / "text_encoder")
    if not (out / "tokenizer").is_dir():
        AutoTokenizer.from_pretrained(str(tokenizer)).save_pretrained(out / "tokenizer")
    if not (out / "image_encoder" / "config.json").is_file():
        tiny_clip().save_pretrained(out / "image_encoder")
    (out / "image_processor").mkdir(exist_ok=True)
    (out / "image_processor" / "preprocessor_config.json").write_text(json.dumps(IMAGE_PROCESSOR, indent=1))
    return out


def task_overrides(folder: Path, image: bool = False) -> list[str]:
    """Config overrides pointing the task: section at the encoders written to `folder` (`image`: the CLIP
    encoder too, for Wan2.1 I2V)."""
    folder = Path(folder)
    args = ["--task.vae", str(folder / "vae"), "--task.text_encoder", str(folder / "text_encoder"),
            "--task.tokenizer", str(folder / "tokenizer")]
    if image:
        args += ["--task.image_encoder", str(folder / "image_encoder"),
                 "--task.image_processor", str(folder / "image_processor")]
    return args


# The tiny configs' clips (tune_wan_tiny.yaml, tune_tiny.sh): 5 frames 2 apart, 32 x 32, 24 text tokens.
TINY_CLIP = {"frames": 5, "height": 32, "width": 32}
TINY_STRIDE, TINY_TEXT_LEN = 2, 24


def extract_args(folder: Path, rows: Path, out: Path, *extra: str, image: bool = False,
                 buckets: tuple[str, ...] = ()) -> list[str]:
    """`python -m shardzoo_wan.extract` arguments for `rows` with the encoders written to `folder`, at the tiny
    configs' clip size (or at `buckets`); `image`: Wan2.1 I2V's conditions and CLIP tokens too."""
    folder = Path(folder)
    args = ["--rows", str(rows), "--vae", str(folder / "vae"), "--text-encoder", str(folder / "text_encoder"),
            "--tokenizer", str(folder / "tokenizer"), "--out", str(out), "--stride", str(TINY_STRIDE),
            "--text-len", str(TINY_TEXT_LEN)]
    if buckets:
        args += ["--buckets", *buckets]
    else:
        args += [a for key, value in TINY_CLIP.items() for a in (f"--{key}", str(value))]
    if image:
        args += ["--image-to-video", "--image-encoder", str(folder / "image_encoder"), "--image-processor",
                 str(folder / "image_processor")]
    return args + list(extra)


def feature_overrides(out: Path, image: bool = False) -> list[str]:
    """Config overrides that train on the extraction in `out` instead of encoding online (the encoder keys
    of task_overrides set to null)."""
    keys = ("vae", "text_encoder", "tokenizer") + (("image_encoder", "image_processor") if image else ())
    return ["--task.features", str(out)] + [a for key in keys for a in (f"--task.{key}", "null")]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tokenizer", type=Path, default=Path("data/tokenizer"))
    args = parser.parse_args(argv)
    print(f"tiny encoders in {save_tiny_encoders(args.out, args.tokenizer)}")


if __name__ == "__main__":
    main()
