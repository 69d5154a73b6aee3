"""Dynamic tiling equals transformers' InternVL image processor (GotOcr2ImageProcessorPil with
crop_to_patches, ImageNet mean/std) bit for bit, and picks the grids model_facts §5 describes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from shardzoo_internvl.image_processing import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    choose_grid,
    num_tiles,
    tile_image,
    to_tensor,
)
from transformers import GotOcr2ImageProcessorPil

SIZES = [(448, 448), (800, 600), (300, 1200), (1920, 1080), (100, 50), (1000, 1000), (2000, 300), (640, 480)]


@pytest.mark.parametrize("width,height", SIZES)
def test_tiles_equal_transformers_processor(width, height):
    image = Image.fromarray(np.random.default_rng(width * height).integers(0, 256, (height, width, 3), dtype=np.uint8))
    ours = torch.stack([to_tensor(t, 448) for t in tile_image(image)])
    processor = GotOcr2ImageProcessorPil(crop_to_patches=True, min_patches=1, max_patches=12,
                                         size={"height": 448, "width": 448}, image_mean=list(IMAGENET_MEAN),
                                         image_std=list(IMAGENET_STD))
    theirs = processor(images=image, return_tensors="pt")["pixel_values"]
    assert ours.shape == theirs.shape and ours.shape[0] == num_tiles(width, height)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def test_grid_choice():
    assert choose_grid(448, 448, 448) == (1, 1)
    assert choose_grid(896, 448, 448) == (2, 1)  # wide: 2 columns, 1 row
    assert choose_grid(448, 1344, 448) == (1, 3)
    # Square images tie between 1x1, 2x2 and 3x3: the larger grid wins while the image has more than
    # half its area.
    assert choose_grid(1000, 1000, 448) == (3, 3) and choose_grid(700, 700, 448) == (2, 2)
    assert choose_grid(600, 600, 448) == (1, 1)  # 600^2 < half of 2x2 tiles (0.5 x 4 x 448^2)
    assert num_tiles(448, 448) == 1 and num_tiles(896, 448) == 3  # thumbnail only with > 1 tile
    assert num_tiles(5000, 5000, max_tiles=4) == 5 and num_tiles(5000, 5000, use_thumbnail=False, max_tiles=4) == 4
