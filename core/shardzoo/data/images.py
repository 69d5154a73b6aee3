"""Images in conversations: `<image>` placeholders in the text, files in the row's `images` column.

A vision-language model package says how an image enters the tokens and the batch (ModelSpec.images
returns an ImageInputs): `prompt(path)` is the text that replaces one `<image>` (e.g. InternVL's
`<img>` + `<IMG_CONTEXT>` x 256 per tile + `</img>`, the tile count from the image's size), and
`pixels(path)` its tensor ([tiles, 3, S, S]) at batch time. Placeholders and files pair up in
order; a row whose counts differ, or whose files are missing, is a bad row naming both.
"""

from __future__ import annotations

from typing import Protocol, Sequence

import torch

from .readers import DataError

IMAGE_PLACEHOLDER = "<image>"


class ImageInputs(Protocol):
    context_token: str
    """The token the image features replace (one per feature vector)."""
    signature: str
    """Every setting that changes prompt() (part of the tokenised-data cache key)."""

    def prompt(self, path: str) -> str:
        """The text of one image in the conversation."""

    def pixels(self, path: str) -> torch.Tensor:
        """The model's input tensor of one image."""


class Conversation(list):
    """A conversation's messages (a list, as before) plus the image files of its `<image>` placeholders."""

    images: tuple[str, ...] = ()


def expand_images(segments: Sequence[tuple[str, bool]], images: Sequence[str], inputs: ImageInputs | None,
                  where: str) -> tuple[list[tuple[str, bool]], int]:
    """Segments with every `<image>` replaced by its prompt, and how many context tokens they hold."""
    if inputs is None and not images:
        return list(segments), 0  # a text model's text stays as written, "<image>" included
    found = sum(text.count(IMAGE_PLACEHOLDER) for text, _ in segments)
    if found != len(images):
        raise DataError(f"{where}: {found} {IMAGE_PLACEHOLDER} placeholders but {len(images)} images; write one "
                        f"{IMAGE_PLACEHOLDER} in the text for each file of the images column")
    if not images:
        return list(segments), 0
    if inputs is None:
        raise DataError(f"{where}: the row has images but the model takes no images; use a vision-language model "
                        "package (e.g. model_id internvl) or drop the images")
    prompts = iter([inputs.prompt(path) for path in images])
    out = []
    for text, trainable in segments:
        pieces = text.split(IMAGE_PLACEHOLDER)
        out.append(("".join(p + next(prompts) for p in pieces[:-1]) + pieces[-1], trainable))
    return out, sum(text.count(inputs.context_token) for text, _ in out)
