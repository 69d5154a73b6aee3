"""Video clips for Wan: a folder of frames (Pillow) or a video file (PyAV; torchvision has no CPU
build here), sampled to the frame count the Wan VAE takes (4n + 1), resized and centre-cropped,
scaled to [-1, 1] as the VAE expects, laid out [3, T, H, W]."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from shardzoo.errors import DataError

FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def _frame_files(path: Path) -> list[Path]:
    """A frame folder's frames, sorted by name."""
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)
    if not files:
        raise DataError(f"video {path}: the folder holds no frames ({', '.join(FRAME_SUFFIXES)})")
    return files


def _open_video(path: Path):
    """The PyAV container of a video file; DataError naming the file when it is missing or unreadable."""
    if not path.is_file():
        raise DataError(f"video {path} does not exist; give a folder of frames or a video file")
    import av

    try:
        return av.open(str(path))
    except (av.error.FFmpegError, ValueError) as exc:
        raise DataError(f"video {path}: cannot be read ({exc})") from None


def read_frames(path: str | Path) -> np.ndarray:
    """[T, H, W, 3] uint8 RGB of a frame folder (files sorted by name) or a video file."""
    path = Path(path)
    if path.is_dir():
        frames = []
        for f in _frame_files(path):
            with Image.open(f) as image:
                frames.append(np.asarray(image.convert("RGB")))
        if len({f.shape for f in frames}) != 1:
            raise DataError(f"video {path}: frames of different sizes")
        return np.stack(frames)
    import av

    with _open_video(path) as container:
        try:
            frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
        except (av.error.FFmpegError, ValueError) as exc:
            raise DataError(f"video {path}: cannot be decoded ({exc})") from None
    if not frames:
        raise DataError(f"video {path}: no video frames")
    return np.stack(frames)


def probe_video(path: str | Path) -> tuple[int, int, int]:
    """(frames, height, width) of a frame folder or a video file from headers (a folder's frame count and
    its first frame's size; a video stream's declared count, decoded only when the container has none)."""
    path = Path(path)
    if path.is_dir():
        files = _frame_files(path)
        with Image.open(files[0]) as image:
            width, height = image.size
        return len(files), height, width
    import av

    with _open_video(path) as container:
        try:
            stream = container.streams.video[0]
            frames, height, width = stream.frames, stream.codec_context.height, stream.codec_context.width
            if not frames:
                frames = sum(1 for _ in container.decode(video=0))
        except (av.error.FFmpegError, ValueError, IndexError) as exc:
            raise DataError(f"video {path}: cannot be read ({exc})") from None
    return frames, height, width


def frame_indices(total: int, num_frames: int, stride: int, where: str) -> np.ndarray:
    """num_frames indices stride apart from the first frame (the Wan VAE takes 4n + 1 frames)."""
    if num_frames % 4 != 1:
        raise DataError(f"num_frames={num_frames}: the Wan VAE encodes 4n + 1 frames (e.g. 81, 49, 17, 5)")
    needed = (num_frames - 1) * stride + 1
    if total < needed:
        raise DataError(f"video {where}: {total} frames, but {num_frames} frames {stride} apart need {needed}")
    return np.arange(num_frames) * stride


def resize_center_crop(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    """Scale (bicubic) so the frame covers height x width, then cut the centre."""
    h, w = frame.shape[:2]
    scale = max(height / h, width / w)
    size = (max(width, round(w * scale)), max(height, round(h * scale)))
    image = Image.fromarray(frame).resize(size, Image.Resampling.BICUBIC)
    left, top = (size[0] - width) // 2, (size[1] - height) // 2
    return np.array(image.crop((left, top, left + width, top + height)))


def load_clip(path: str | Path, num_frames: int, height: int, width: int, stride: int = 1) -> torch.Tensor:
    """[3, num_frames, height, width] in [-1, 1]."""
    frames = read_frames(path)
    picked = [resize_center_crop(frames[i], height, width) for i in frame_indices(len(frames), num_frames, stride,
                                                                                  str(path))]
    clip = torch.from_numpy(np.stack(picked)).permute(3, 0, 1, 2).float()
    return clip / 127.5 - 1.0
