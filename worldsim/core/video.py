"""Writing frames to mp4, atomically (a temporary file renamed into place), and composing them."""

from __future__ import annotations

from pathlib import Path

import imageio.v2 as imageio
import numpy as np

from worldsim.core.outputs import replacing


def write_video(path: str | Path, frames: np.ndarray, fps: float, scale: int = 1) -> Path:
    """Write uint8 frames [T, H, W, 3] to an H.264 mp4 at `fps`, each pixel repeated `scale` times.

    Raises:
        ValueError: on frames of the wrong shape or dtype, or a non-positive fps / scale.
    """
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"frames must be uint8 [T, H, W, 3] with T >= 1, got {frames.dtype} {frames.shape}")
    if not fps > 0 or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"fps must be > 0 and scale an int >= 1, got fps={fps!r} scale={scale!r}")
    if scale > 1:
        frames = frames.repeat(scale, axis=1).repeat(scale, axis=2)
    path = Path(path)
    if path.suffix.lower() != ".mp4":
        raise ValueError(f"video path must end in .mp4, got {str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp:
        with imageio.get_writer(tmp, fps=fps, codec="libx264", quality=8, macro_block_size=16,
                                ffmpeg_log_level="error") as w:
            for f in frames:
                w.append_data(f)
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
