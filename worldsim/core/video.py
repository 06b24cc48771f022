"""Writing frames to mp4, atomically (a temporary file renamed into place), and composing them.

A command that writes a video checks its target first (`check_video_target`): an existing file is
replaced only when the user says so (`--force`), and the frame rate, the scale and the frame size the
encoder takes are checked before any frame is made.
"""

from __future__ import annotations

import math
from pathlib import Path

import imageio.v2 as imageio
import numpy as np

from worldsim.core.outputs import check_new_file, replacing

# libx264 refuses a frame with a side past this, and imageio then leaves an empty file without an error.
MAX_VIDEO_SIDE = 16384


def check_video_target(out: str | Path, *, force: bool = False, fps: float | None = None, scale: int = 1,
                       frame_size: tuple[int, int] | None = None, what: str = "--out") -> Path:
    """Refuse, before any work, a video output that would be lost or could not be written: a path not
    ending in .mp4, a directory, an existing file (unless `force`), an unwritable place, a frame rate
    that is not > 0, a scale that is not an int >= 1, or frames (`frame_size`, (H, W) before scaling)
    larger than the encoder takes once scaled.

    Raises:
        ValueError: naming the flag and what was wrong.
        OSError: when the place cannot be written.
    """
    out = check_new_file(out, ".mp4", force=force, what=what)
    if fps is not None and not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise ValueError(f"--fps must be a number > 0, got {fps!r}")
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"--scale must be an int >= 1, got {scale!r}")
    if frame_size is not None and max(frame_size) * scale > MAX_VIDEO_SIDE:
        h, w = frame_size
        raise ValueError(f"--scale {scale} makes {h * scale}x{w * scale} px frames; the H.264 encoder takes at most "
                         f"{MAX_VIDEO_SIDE} px a side: use --scale {MAX_VIDEO_SIDE // max(frame_size)} or less")
    return out


def write_video(path: str | Path, frames: np.ndarray, fps: float, scale: int = 1) -> Path:
    """Write uint8 frames [T, H, W, 3] to an H.264 mp4 at `fps`, each pixel repeated `scale` times.

    Raises:
        ValueError: on frames of the wrong shape or dtype, or a non-positive fps / scale.
    """
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"frames must be uint8 [T, H, W, 3] with T >= 1, got {frames.dtype} {frames.shape}")
    if not fps > 0 or isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"fps must be > 0 and scale an int >= 1, got fps={fps!r} scale={scale!r}")
    if max(frames.shape[1:3]) * scale > MAX_VIDEO_SIDE:
        raise ValueError(f"frames of {frames.shape[1]}x{frames.shape[2]} px at scale {scale} pass the encoder's "
                         f"{MAX_VIDEO_SIDE} px a side")
    path = Path(path)
    if path.suffix.lower() != ".mp4":
        raise ValueError(f"video path must end in .mp4, got {str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp:
        with imageio.get_writer(tmp, fps=fps, codec="libx264", quality=8, macro_block_size=16,
                                ffmpeg_log_level="error") as w:
            # Scaled one frame at a time: the whole clip scaled up at once can take gigabytes.
            for f in frames:
                w.append_data(f.repeat(scale, axis=0).repeat(scale, axis=1) if scale > 1 else f)
    return path


def side_by_side(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Compose [prediction | truth | |difference|] frames: uint8 [T, H, W, 3] twice -> [T, H, 3W, 3].

    The difference is the per-channel absolute difference, unscaled, so black means identical. Frames
    whose sides are multiples of 16 give a video that needs no rescaling.

    Raises:
        ValueError / TypeError: on frames that are not uint8 [T, H, W, 3] of the same shape.
    """
    pred, true = np.asarray(pred), np.asarray(true)
    for name, f in (("pred", pred), ("true", true)):
        if f.dtype != np.uint8:
            raise TypeError(f"{name} must be uint8 frames, got {f.dtype}")
        if f.ndim != 4 or f.shape[-1] != 3:
            raise ValueError(f"{name} must be [T, H, W, 3], got {f.shape}")
    if pred.shape != true.shape:
        raise ValueError(f"pred and true shapes differ: {pred.shape} vs {true.shape}")
    diff = np.abs(pred.astype(np.int16) - true.astype(np.int16)).astype(np.uint8)
    return np.concatenate([pred, true, diff], axis=2)
