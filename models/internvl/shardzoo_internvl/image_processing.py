"""InternVL's dynamic tiling (docs/model_facts.md §5), with Pillow and torch only.

An image becomes `rows x cols` tiles of `image_size` px, the grid (1 <= tiles <= max_tiles)
whose aspect ratio is closest to the image's (on a tie the larger grid when the image has more
than half its area), cut row-major from the image resized (bicubic) to the grid; more than one
tile adds a thumbnail of the whole image. Each tile: RGB, [0, 1], ImageNet mean / std.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from shardzoo.errors import DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def candidate_grids(min_tiles: int, max_tiles: int) -> list[tuple[int, int]]:
    """(cols, rows) grids with min_tiles <= cols x rows <= max_tiles, fewest tiles first."""
    grids = {(i, j) for n in range(min_tiles, max_tiles + 1) for i in range(1, n + 1) for j in range(1, n + 1)
             if min_tiles <= i * j <= max_tiles}
    return sorted(grids, key=lambda g: g[0] * g[1])


def choose_grid(width: int, height: int, image_size: int, min_tiles: int = 1, max_tiles: int = 12) -> tuple[int, int]:
    """The (cols, rows) grid of a width x height image."""
    aspect = width / height
    best, best_diff = (1, 1), float("inf")
    for cols, rows in candidate_grids(min_tiles, max_tiles):
        diff = abs(aspect - cols / rows)
        if diff < best_diff:
            best, best_diff = (cols, rows), diff
        elif diff == best_diff and width * height > 0.5 * image_size * image_size * cols * rows:
            best = (cols, rows)
    return best


def tile_image(image: Image.Image, image_size: int = 448, min_tiles: int = 1, max_tiles: int = 12,
               use_thumbnail: bool = True) -> list[Image.Image]:
    cols, rows = choose_grid(*image.size, image_size, min_tiles, max_tiles)
    resized = image.resize((image_size * cols, image_size * rows), Image.Resampling.BICUBIC)
    tiles = [resized.crop((c * image_size, r * image_size, (c + 1) * image_size, (r + 1) * image_size))
             for r in range(rows) for c in range(cols)]
    if use_thumbnail and len(tiles) > 1:
        tiles.append(image.resize((image_size, image_size), Image.Resampling.BICUBIC))
    return tiles


def to_tensor(tile: Image.Image, image_size: int) -> torch.Tensor:
    """[3, S, S] normalised."""
    if tile.size != (image_size, image_size):
        tile = tile.resize((image_size, image_size), Image.Resampling.BICUBIC)
    x = torch.from_numpy(np.asarray(tile, dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (x - mean) / std


def load_image(path: str | Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, ValueError) as exc:
        raise DataError(f"image {path}: cannot be read ({exc}); check the path in the dataset row") from None


def image_tiles(path: str | Path, image_size: int = 448, max_tiles: int = 12,
                use_thumbnail: bool = True) -> torch.Tensor:
    """[tiles, 3, S, S] of one image file."""
    tiles = tile_image(load_image(path), image_size, 1, max_tiles, use_thumbnail)
    return torch.stack([to_tensor(t, image_size) for t in tiles])


def num_tiles(width: int, height: int, image_size: int = 448, max_tiles: int = 12, use_thumbnail: bool = True) -> int:
    """Tiles tile_image makes of a width x height image (what the prompt's image tokens are counted from)."""
    cols, rows = choose_grid(width, height, image_size, 1, max_tiles)
    return cols * rows + (1 if use_thumbnail and cols * rows > 1 else 0)


class InternVLImages:
    """How InternVL takes a conversation's images (shardzoo.data.images.ImageInputs): each image is
    `<img>` + `<IMG_CONTEXT>` x (tokens_per_tile x its tiles) + `</img>` in the text, and its tiles
    in pixel_values."""

    context_token = "<IMG_CONTEXT>"
    start_token, end_token = "<img>", "</img>"

    def __init__(self, image_size: int, tokens_per_tile: int, max_tiles: int = 12, use_thumbnail: bool = True):
        self.image_size, self.tokens_per_tile = image_size, tokens_per_tile
        self.max_tiles, self.use_thumbnail = max_tiles, use_thumbnail
        self.signature = f"internvl-v1:{image_size}px:{tokens_per_tile}tok:{max_tiles}tiles:thumb{use_thumbnail}"

    def tiles_of(self, path: str) -> int:
        try:
            with Image.open(path) as image:  # the header only: the size decides the tiles
                width, height = image.size
        except (OSError, ValueError) as exc:
            raise DataError(f"image {path}: cannot be read ({exc}); check the path in the dataset row") from None
        return num_tiles(width, height, self.image_size, self.max_tiles, self.use_thumbnail)

    def prompt(self, path: str) -> str:
        return self.start_token + self.context_token * (self.tokens_per_tile * self.tiles_of(path)) + self.end_token

    def pixels(self, path: str) -> torch.Tensor:
        return image_tiles(path, self.image_size, self.max_tiles, self.use_thumbnail)
