"""Writes the tiny video-caption sample shipped in data/ (deterministic; rerun to regenerate).

    python data/make_video_data.py

videos/: 6 clips of 9 frames, 64 x 48 px, a coloured square moving across a plain background; the
even ones as folders of PNG frames, the odd ones as MPEG-4 files (written with PyAV).
video_sample.json: one row per clip, {"video": path, "caption": what moves where}.
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


def clip(colour: str, move: str) -> np.ndarray:
    frames = np.full((FRAMES, H, W, 3), 235, dtype=np.uint8)
    dx, dy = MOVES[move]
    x0 = 2 if dx >= 0 else W - SIDE - 2
    y0 = 2 if dy >= 0 else H - SIDE - 2
    for t in range(FRAMES):
        x, y = x0 + dx * t, y0 + dy * t
        frames[t, y:y + SIDE, x:x + SIDE] = COLOURS[colour]
    return frames


def main() -> None:
    from PIL import Image

    folder = HERE / "videos"
    folder.mkdir(exist_ok=True)
    rows = []
    for i, (colour, move) in enumerate((c, m) for c in COLOURS for m in ("right", "down")):
        frames = clip(colour, move)
        if i % 2 == 0:
            out = folder / f"clip_{i:02d}"
            out.mkdir(exist_ok=True)
            for t, frame in enumerate(frames):
                Image.fromarray(frame).save(out / f"{t:04d}.png")
            name = f"videos/clip_{i:02d}"
        else:
            name = f"videos/clip_{i:02d}.mp4"
            with av.open(str(HERE / name), "w") as container:
                stream = container.add_stream("mpeg4", rate=8)
                stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
                stream.options = {"qscale": "2"}  # near-lossless, so the test can compare with the frames
                for frame in frames:
                    for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                        container.mux(packet)
                for packet in stream.encode():
                    container.mux(packet)
        rows.append({"video": name, "caption": f"A {colour} square moves {move} across a light background."})
    (HERE / "video_sample.json").write_text(json.dumps(rows, indent=1) + "\n")
    print(f"wrote {len(rows)} clips to {folder} and {HERE / 'video_sample.json'}")


if __name__ == "__main__":
    main()
