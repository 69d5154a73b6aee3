"""Image-text data for InternVL: `<image>` placeholders become `<img>` + 4 x tiles `<IMG_CONTEXT>` +
`</img>` (tiles from each image's size), the batch carries the tiles of every image in token
order, labels stay on assistant turns, and bad rows name themselves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from shardzoo.config import Config, DataConfig, TrainingConfig
from shardzoo.data import build_train_data, load_tokenizer
from shardzoo.data.readers import DataError
from shardzoo_internvl.image_processing import InternVLImages, image_tiles, num_tiles

REPO = Path(__file__).resolve().parents[3]
TOKENIZER = load_tokenizer(str(REPO / "data/tokenizer_internvl"))
IMAGES = InternVLImages(image_size=56, tokens_per_tile=4, max_tiles=4)
CONTEXT, START, END = (TOKENIZER.convert_tokens_to_ids(t) for t in ("<IMG_CONTEXT>", "<img>", "</img>"))


def train_data(tmp_path, dataset="image_sample", dataset_dir=REPO / "data", **data):
    data = {"cutoff_len": 512, "max_samples": 12, **data}
    cfg = Config(data=DataConfig(dataset=dataset, dataset_dir=str(dataset_dir), cache_dir=str(tmp_path / "cache"),
                                 **data),
                 training=TrainingConfig(output_dir=str(tmp_path), per_device_train_batch_size=4))
    return build_train_data(cfg, TOKENIZER, rank=0, world=1, local_rank=0, barrier=lambda: None, images=IMAGES)


def loader(tmp_path, **kwargs):
    return train_data(tmp_path, **kwargs).loader


def test_rows_batches_and_labels(tmp_path):
    data = loader(tmp_path)
    rows = [data.rows[i] for i in range(len(data.rows))]
    assert any(len(r.images) == 2 for r in rows)  # multi-image samples exist
    for row in rows:
        sizes = [Image.open(p).size for p in row.images]
        want = sum(4 * num_tiles(w, h, 56, 4) for w, h in sizes)
        ids = row.input_ids
        assert int((ids == CONTEXT).sum()) == want and int((ids == START).sum()) == len(row.images)
        # Image tokens are prompt tokens: never a target.
        assert not np.isin(row.targets, [CONTEXT, START, END]).any()
    batch = next(iter(data))[0]
    tiles = torch.cat([image_tiles(p, 56, 4) for i in range(4) for p in data.rows[int(data.order(0)[0][i])].images])
    assert torch.equal(batch.pixel_values, tiles)
    assert int((batch.input_ids == CONTEXT).sum()) == 4 * batch.pixel_values.shape[0]


def write(tmp_path, rows):
    (tmp_path / "d.json").write_text(json.dumps(rows))
    (tmp_path / "dataset_info.json").write_text(json.dumps({"d": {
        "file_name": "d.json", "formatting": "sharegpt", "columns": {"messages": "conversations"}}}))
    Image.new("RGB", (90, 40)).save(tmp_path / "a.png")


def turn(question):
    return {"conversations": [{"from": "human", "value": question}, {"from": "gpt", "value": "ok"}]}


@pytest.mark.parametrize("row,message", [
    ({**turn("<image> and <image>"), "images": ["a.png"]}, r"d.json\[row 0\]: 2 <image> placeholders but 1 images"),
    ({**turn("no placeholder"), "images": ["a.png"]}, r"0 <image> placeholders but 1 images"),
    ({**turn("<image>"), "images": ["missing.png"]}, r"image .*missing.png does not exist"),
])
def test_bad_rows_name_themselves(tmp_path, row, message):
    write(tmp_path, [row])
    with pytest.raises(DataError, match=message):
        loader(tmp_path, dataset="d", dataset_dir=tmp_path)


def test_image_cut_by_cutoff_is_counted_not_fed(tmp_path):
    # a.png (90x40) is 2 tiles + thumbnail: 12 image tokens, in the second user turn; a cutoff inside
    # them leaves the first answer's labels, but half an image cannot be fed: the sample is dropped.
    two_turns = {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "ok"},
                                   {"from": "human", "value": "<image>"}, {"from": "gpt", "value": "ok"}],
                 "images": ["a.png"]}
    write(tmp_path, [two_turns, turn("text only")])
    data = train_data(tmp_path, dataset="d", dataset_dir=tmp_path, cutoff_len=20)
    assert len(data.loader.rows) == 1 and data.stats["d"].images_cut == 1
    assert "1 image tokens cut by cutoff_len" in data.describe()


def test_text_model_refuses_image_rows(tmp_path):
    write(tmp_path, [{**turn("<image>"), "images": ["a.png"]}])
    cfg = Config(data=DataConfig(dataset="d", dataset_dir=str(tmp_path), cache_dir=str(tmp_path / "c")),
                 training=TrainingConfig(output_dir=str(tmp_path)))
    with pytest.raises(DataError, match="the row has images but the model takes no images"):
        build_train_data(cfg, TOKENIZER, rank=0, world=1, local_rank=0, barrier=lambda: None)
