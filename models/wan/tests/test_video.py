"""Video clips: frame folders and MPEG-4 files (PyAV) decode to the frames data/make_video_data.py
drew, the Wan VAE's 4n + 1 frame rule and short clips are refused by name, and clips come out
resized, centre-cropped and scaled to [-1, 1] as [3, T, H, W]."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from shardzoo.testing.scripts import load_script
from shardzoo_wan.video import frame_indices, load_clip, probe_video, read_frames, resize_center_crop

DATA = Path(__file__).resolve().parents[3] / "data"


def drawn(name: str) -> np.ndarray:
    module = load_script(DATA / "make_video_data.py")
    row = next(r for r in json.loads((DATA / "video_sample.json").read_text()) if r["video"] == name)
    words = row["caption"].split()
    return module.clip(words[1], words[4])


def test_frame_folder_and_mp4_decode_to_the_drawn_frames():
    folder = read_frames(DATA / "videos/clip_00")
    assert folder.shape == (9, 48, 64, 3) and np.array_equal(folder, drawn("videos/clip_00"))
    mp4 = read_frames(DATA / "videos/clip_01.mp4")
    assert mp4.shape == (9, 48, 64, 3)
    # MPEG-4 is lossy: near-lossless settings keep the mean error to a few levels of 255.
    assert np.abs(mp4.astype(float) - drawn("videos/clip_01.mp4")).mean() < 4


def test_frame_count_rules_name_the_problem():
    assert frame_indices(9, 5, 2, "v").tolist() == [0, 2, 4, 6, 8]
    with pytest.raises(ValueError, match=r"num_frames=4: the Wan VAE encodes 4n \+ 1 frames"):
        frame_indices(9, 4, 1, "v")
    with pytest.raises(ValueError, match="video clip.mp4: 9 frames, but 5 frames 3 apart need 13"):
        frame_indices(9, 5, 3, "clip.mp4")
    with pytest.raises(ValueError, match="does not exist"):
        read_frames(DATA / "videos/missing.mp4")


def test_resize_center_crop_and_clip_layout():
    frame = np.zeros((40, 80, 3), dtype=np.uint8)
    frame[:, 40:] = 255  # right half white
    out = resize_center_crop(frame, 20, 20)  # 40x80 -> 20x40, centre 20 columns: 10 black, 10 white
    assert out.shape == (20, 20, 3) and out[:, :8].max() < 30 and out[:, 12:].min() > 225
    clip = load_clip(DATA / "videos/clip_02", num_frames=5, height=32, width=32, stride=2)
    assert clip.shape == (3, 5, 32, 32) and clip.min() >= -1 and clip.max() <= 1
    assert torch.equal(clip[:, 0], torch.from_numpy(resize_center_crop(read_frames(DATA / "videos/clip_02")[0], 32, 32))
                       .permute(2, 0, 1).float() / 127.5 - 1)


def test_probe_reads_frame_count_and_size_from_headers_as_decoding_gives_them():
    """What size buckets assign by: a frame folder's count and first frame, an MPEG-4 stream's header."""
    rows = json.loads((DATA / "video_buckets_sample.json").read_text())
    for row in rows:  # landscape, portrait and 3-frame clips, as folders and MPEG-4 files
        path = DATA / row["video"]
        frames = read_frames(path)
        assert probe_video(path) == frames.shape[:3], row["video"]
    assert {probe_video(DATA / r["video"]) for r in rows} == {(9, 48, 64), (9, 64, 48), (3, 48, 64)}
