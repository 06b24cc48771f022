"""Metrics as pure functions on arrays. Frames are uint8 [..., H, W, 3]."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def _as_float_frames(x: np.ndarray | torch.Tensor, name: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x)) if not isinstance(x, torch.Tensor) else x
    if t.dtype != torch.uint8:
        raise TypeError(f"{name} must be uint8 frames, got {t.dtype}")
    if t.ndim < 3 or t.shape[-1] != 3:
        raise ValueError(f"{name} must be [..., H, W, 3], got {tuple(t.shape)}")
    return t.reshape(-1, *t.shape[-3:]).float()


def psnr(pred: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor, max_db: float = 100.0) -> np.ndarray:
    """Peak signal-to-noise ratio (dB, data range 255) per frame: shape = leading dims of the inputs.
    Identical frames give `max_db`."""
    p, t = _as_float_frames(pred, "pred"), _as_float_frames(target, "target")
    if p.shape != t.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(p.shape)} vs {tuple(t.shape)}")
    mse = (p - t).pow(2).mean(dim=(1, 2, 3))
    db = torch.where(mse > 0, 10 * torch.log10(255.0**2 / mse.clamp_min(1e-12)), torch.tensor(max_db))
    lead = np.asarray(pred).shape[:-3] if not isinstance(pred, torch.Tensor) else tuple(pred.shape[:-3])
    return db.clamp(max=max_db).numpy().reshape(lead)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g)


def ssim(pred: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor) -> np.ndarray:
    """Structural similarity (Wang et al. 2004) per frame: 11x11 Gaussian window (sigma 1.5),
    K1 = 0.01, K2 = 0.03, data range 255, averaged over valid windows and the three channels.
    Matches `skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=255, channel_axis=-1)` (tested)."""
    p, t = _as_float_frames(pred, "pred"), _as_float_frames(target, "target")
    if p.shape != t.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(p.shape)} vs {tuple(t.shape)}")
    if min(p.shape[1:3]) < 11:
        raise ValueError(f"ssim needs frames of at least 11x11, got {tuple(p.shape[1:3])}")
    p = p.double().permute(0, 3, 1, 2)
    t = t.double().permute(0, 3, 1, 2)
    w = _gaussian_window().expand(3, 1, 11, 11)
    filt = lambda x: F.conv2d(x, w, groups=3)  # noqa: E731  (valid windows only, like skimage's crop)
    mu_p, mu_t = filt(p), filt(t)
    s_pp = filt(p * p) - mu_p**2
    s_tt = filt(t * t) - mu_t**2
    s_pt = filt(p * t) - mu_p * mu_t
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    s = ((2 * mu_p * mu_t + c1) * (2 * s_pt + c2)) / ((mu_p**2 + mu_t**2 + c1) * (s_pp + s_tt + c2))
    lead = np.asarray(pred).shape[:-3] if not isinstance(pred, torch.Tensor) else tuple(pred.shape[:-3])
    return s.mean(dim=(1, 2, 3)).float().numpy().reshape(lead)


def code_usage(codes: np.ndarray | torch.Tensor, codebook_size: int) -> float:
    """Fraction of the codebook that appears at least once in `codes`."""
    c = torch.as_tensor(np.asarray(codes)) if not isinstance(codes, torch.Tensor) else codes
    if c.numel() and (int(c.min()) < 0 or int(c.max()) >= codebook_size):
        raise ValueError(f"codes must be in [0, {codebook_size}), got [{int(c.min())}, {int(c.max())}]")
    return float(c.unique().numel() / codebook_size)
