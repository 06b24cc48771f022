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


def _gaussian_band(n: int, size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """[n - size + 1, n]: row i holds the normalised 1-D Gaussian at columns i .. i + size - 1, so
    `band @ x @ band.T` is the 2-D Gaussian filter of x over valid windows only. A 2-D Gaussian is
    separable; as two banded matmuls it runs about 90x faster than an 11x11 float64 conv2d on a CPU."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    band = torch.zeros(n - size + 1, n, dtype=torch.float64)
    for i in range(n - size + 1):
        band[i, i : i + size] = g
    return band


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
    bh, bw = _gaussian_band(p.shape[2]), _gaussian_band(p.shape[3])
    filt = lambda x: bh @ x @ bw.T  # noqa: E731  (valid windows only, like skimage's crop)
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


# --- state trajectories ----------------------------------------------------------------------------
# Trajectory arrays are [..., T, D] over steps 1..T after the shared initial state; a `mask` [..., T]
# marks the steps that exist (an episode that terminates at step L has L of them).


def state_nrmse(pred: np.ndarray, true: np.ndarray, std: np.ndarray, min_std: float = 1e-6) -> np.ndarray:
    """Root-mean-square state error, each dimension divided by its dataset std: [..., D] -> [...].

    A value of 1 is an error as large as the data's own spread; 0.1 is the valid-horizon threshold."""
    pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    if pred.shape != true.shape:
        raise ValueError(f"pred and true shapes differ: {pred.shape} vs {true.shape}")
    std = np.maximum(np.asarray(std, np.float64), min_std)
    if std.shape != pred.shape[-1:]:
        raise ValueError(f"std must have shape ({pred.shape[-1]},), got {std.shape}")
    return np.sqrt(np.mean(((pred - true) / std) ** 2, axis=-1))


def valid_horizon(nrmse: np.ndarray, threshold: float = 0.1, lengths: np.ndarray | None = None) -> np.ndarray:
    """Steps predicted before the error first exceeds `threshold`: [..., T] -> int [...].

    Step t (1-based) is valid when the errors of steps 1..t are all <= threshold; the result is bounded
    by the episode's length (`lengths` [...], default T): an episode that never exceeds it scores its
    length. NaN errors count as exceeding."""
    e = np.asarray(nrmse, np.float64)
    T = e.shape[-1]
    length = np.full(e.shape[:-1], T) if lengths is None else np.minimum(np.asarray(lengths), T)
    bad = ~(e <= threshold)
    first_bad = np.where(bad.any(-1), bad.argmax(-1), T)
    return np.minimum(first_bad, length).astype(np.int64)


def position_error(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Euclidean distance between positions [..., 3] (or [..., 2]) -> [...], in their units (metres)."""
    pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    if pred.shape != true.shape:
        raise ValueError(f"pred and true shapes differ: {pred.shape} vs {true.shape}")
    return np.linalg.norm(pred - true, axis=-1)


def finite_difference_velocity(positions: np.ndarray, dt: float) -> np.ndarray:
    """Velocities between consecutive positions: [..., T+1, P] -> [..., T, P] (units per second)."""
    if not dt > 0:
        raise ValueError(f"dt must be > 0, got {dt!r}")
    p = np.asarray(positions, np.float64)
    return np.diff(p, axis=-2) / dt


def at_horizons(per_step: np.ndarray, mask: np.ndarray, horizons: list[int]) -> dict[int, float]:
    """The mean over episodes of a per-step metric [E, T] at each horizon h (step h, 1-based), over the
    episodes that still run at step h (`mask` [E, T]); NaN where none does."""
    x, m = np.asarray(per_step, np.float64), np.asarray(mask, bool)
    out = {}
    for h in horizons:
        col, ok = x[:, h - 1], m[:, h - 1] & np.isfinite(x[:, h - 1])
        out[h] = float(col[ok].mean()) if ok.any() else float("nan")
    return out


def masked_step_mean(per_step: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The per-step curve [T]: the mean over the episodes that run at each step (NaN where none)."""
    x, m = np.asarray(per_step, np.float64), np.asarray(mask, bool) & np.isfinite(per_step)
    n = m.sum(0)
    s = np.where(m, x, 0.0).sum(0)
    return np.where(n > 0, s / np.maximum(n, 1), np.nan)


# --- discrete events -------------------------------------------------------------------------------


def match_events(pred_steps: np.ndarray, true_steps: np.ndarray, window: int) -> tuple[int, list[int]]:
    """Match predicted event steps to true ones of the same kind, one to one, each pair at most
    `window` steps apart, nearest pairs first.

    Returns:
        (number of matched pairs, the absolute timing error in steps of each pair).
    """
    if window < 0:
        raise ValueError(f"window must be >= 0, got {window}")
    p, t = np.asarray(pred_steps, np.int64).ravel(), np.asarray(true_steps, np.int64).ravel()
    pairs = sorted((abs(int(a) - int(b)), i, j) for i, a in enumerate(p) for j, b in enumerate(t)
                   if abs(int(a) - int(b)) <= window)
    used_p, used_t, errors = set(), set(), []
    for d, i, j in pairs:
        if i not in used_p and j not in used_t:
            used_p.add(i)
            used_t.add(j)
            errors.append(d)
    return len(errors), errors


def event_scores(n_pred: int, n_true: int, n_matched: int) -> tuple[float, float, float]:
    """(precision, recall, F1) of matched events. With no true events recall is 1; with no predicted
    events precision is 1 only when there was nothing to predict."""
    precision = n_matched / n_pred if n_pred else float(n_true == 0)
    recall = n_matched / n_true if n_true else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return float(precision), float(recall), float(f1)


def first_true(flags: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """The 1-based step of the first True along the last axis ([..., T] -> int [...]), T + 1 if none."""
    f = np.asarray(flags, bool)
    if mask is not None:
        f = f & np.asarray(mask, bool)
    T = f.shape[-1]
    return np.where(f.any(-1), f.argmax(-1) + 1, T + 1).astype(np.int64)


def termination_agreement(pred_step: np.ndarray, true_step: np.ndarray, horizon: int, tolerance: int = 2
                          ) -> np.ndarray:
    """Whether predicted and true termination agree up to `horizon`, per episode: both steps (1-based,
    anything past the horizon meaning "not by then") are within `tolerance` steps of each other."""
    p = np.minimum(np.asarray(pred_step), horizon + 1)
    t = np.minimum(np.asarray(true_step), horizon + 1)
    return np.abs(p - t) <= tolerance


# --- objects in frames -----------------------------------------------------------------------------


def label_components(mask: np.ndarray | torch.Tensor) -> torch.Tensor:
    """8-connected components of boolean masks [N, H, W]: long labels [N, H, W], 0 for background and,
    for foreground, 1 + the largest flat pixel index of its component (so labels are unique per frame).

    Labels spread by 3x3 max-pooling until nothing changes; a pure-torch, batched flood fill (float32
    holds the labels exactly up to 2**24 pixels a frame)."""
    m = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask).bool()
    if m.ndim != 3:
        raise ValueError(f"mask must be [N, H, W], got {tuple(m.shape)}")
    n, h, w = m.shape
    idx = torch.arange(1, h * w + 1, dtype=torch.float32).view(1, 1, h, w).expand(n, 1, h, w)
    fg = m[:, None]
    lab = torch.where(fg, idx, torch.zeros(()))
    for _ in range(h * w):
        new = torch.where(fg, F.max_pool2d(lab, 3, stride=1, padding=1), lab)
        if torch.equal(new, lab):
            break
        lab = new
    return lab[:, 0].long()


def count_components(mask: np.ndarray | torch.Tensor, min_area: int = 1) -> np.ndarray:
    """Number of 8-connected components of at least `min_area` pixels in each mask [..., H, W] -> [...]."""
    m = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask).bool()
    lead, (h, w) = tuple(m.shape[:-2]), tuple(m.shape[-2:])
    lab = label_components(m.reshape(-1, h, w))
    n = lab.shape[0]
    if n == 0:
        return np.zeros(lead, np.int64)
    # One bin per (frame, label): the pixel count of every component.
    flat = (torch.arange(n)[:, None] * (h * w + 1) + lab.reshape(n, -1)).reshape(-1)
    area = torch.bincount(flat, minlength=n * (h * w + 1)).view(n, h * w + 1)[:, 1:]
    return (area >= min_area).sum(1).numpy().reshape(lead)
