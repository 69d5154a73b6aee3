"""Writes the tiny video-caption sample shipped in data/ (deterministic; rerun to regenerate).

    python data/make_video_data.py

videos/: 6 clips of 9 frames, 64 x 48 px, a coloured square moving across a plain background; the
even ones as folders of PNG frames, the odd ones as MPEG-4 files (written with PyAV).
video_sample.json: one row per clip, {"video": path, "caption": what moves where}.
video_buckets_sample.json: those 6 and 4 clips of other shapes for size buckets (task.buckets):
clip_06 and clip_07.mp4 portrait (48 x 64 px, 9 frames), clip_08 and clip_09.mp4 short (64 x 48 px,
3 frames).
"""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np

HERE = Path(__file__).resolve().parent
COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220)}
MOVES = {"right": (5, 0), "down": (0, 3), "left": (-5, 0)}
W, H, FRAMES, SIDE = 64, 48, 9, 12


def clip(colour: str, move: str, width: int = W, height: int = H, count: int = FRAMES) -> np.ndarray:
    frames = np.full((count, height, width, 3), 235, dtype=np.uint8)
    dx, dy = MOVES[move]
    x0 = 2 if dx >= 0 else width - SIDE - 2
    y0 = 2 if dy >= 0 else height - SIDE - 2
    for t in range(count):
        x, y = x0 + dx * t, y0 + dy * t
        frames[t, y:y + SIDE, x:x + SIDE] = COLOURS[colour]
    return frames


def write(folder: Path, i: int, frames: np.ndarray) -> str:
    """Clip i as a folder of PNG frames (even i) or an MPEG-4 file (odd i); its path relative to data/."""
    from PIL import Image

    if i % 2 == 0:
        out = folder / f"clip_{i:02d}"
        out.mkdir(exist_ok=True)
        for t, frame in enumerate(frames):
            Image.fromarray(frame).save(out / f"{t:04d}.png")
        return f"videos/clip_{i:02d}"
    name = f"videos/clip_{i:02d}.mp4"
    with av.open(str(HERE / name), "w") as container:
        stream = container.add_stream("mpeg4", rate=8)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"qscale": "2"}  # near-lossless, so the test can compare with the frames
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return name


def main() -> None:
    folder = HERE / "videos"
    folder.mkdir(exist_ok=True)
    rows = []
    for i, (colour, move) in enumerate((c, m) for c in COLOURS for m in ("right", "down")):
        name = write(folder, i, clip(colour, move))
        rows.append({"video": name, "caption": f"A {colour} square moves {move} across a light background."})
    (HERE / "video_sample.json").write_text(json.dumps(rows, indent=1) + "\n")
    shapes = [("red", "down", H, W, FRAMES, "tall"), ("blue", "down", H, W, FRAMES, "tall"),
              ("green", "left", W, H, 3, "short"), ("red", "left", W, H, 3, "short")]
    for i, (colour, move, width, height, count, kind) in enumerate(shapes, start=len(rows)):
        name = write(folder, i, clip(colour, move, width, height, count))
        rows.append({"video": name, "caption": f"A {colour} square moves {move} across a light background, "
                                                f"{kind}."})
    (HERE / "video_buckets_sample.json").write_text(json.dumps(rows, indent=1) + "\n")
    print(f"wrote {len(rows)} clips to {folder}, {HERE / 'video_sample.json'} and {HERE / 'video_buckets_sample.json'}")


if __name__ == "__main__":
    main()
