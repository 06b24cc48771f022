"""Rules that flag an abnormal bounce clip from its frames alone: a ball that vanishes, splits, changes
colour or size, or passes through a wall or another ball.

Each ball is found by its colour (`worldsim.eval.physics.ball_color_masks`) and its 8-connected
components (`worldsim.eval.metrics.label_components`). The camera looks straight at the plane the
balls move in, so metres map to pixels by one scale and offset (`PixelMap`, from the scene's camera):
a ball of radius 0.12 m is about 3.4 px across its radius, 36 px of area. Per frame and ball:

- vanishes: its colour covers less than 35% of a ball's area;
- splits: two or more components of at least a quarter of a ball's area;
- changes size: its largest component's area is outside 0.4 to 2.5 times a ball's;
- changes colour: it vanishes while another colour shows two balls' worth of components;
- passes through a wall: its centre is beyond the box's inside face by more than half a radius;
- passes through a ball: its centre is within one radius of another ball's.

A clip is abnormal when any rule holds on `persist` consecutive frames or more (2 by default: one
frame of a decoder's blur is not a ball that vanished). The same rules on MuJoCo's own frames, passed
through the tokenizer, give the rate a perfect world would score (`worldsim eval prompts` reports it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from worldsim.envs import bounce
from worldsim.eval.metrics import label_components
from worldsim.eval.physics import ball_color_masks

RULES = ("vanishes", "splits", "changes size", "changes colour", "through a wall", "through a ball")


@dataclass(frozen=True)
class PixelMap:
    """Metres in the balls' plane <-> pixels: column = cx + x * scale, row = cy - (z - z0) * scale."""

    scale: float  # pixels per metre
    cx: float
    cy: float
    z0: float

    @classmethod
    def for_scene(cls, scene) -> PixelMap:
        """From a bounce scene's camera: its distance, the model's vertical field of view and the frame size."""
        fovy = float(scene.model.vis.global_.fovy)
        cam = scene.camera
        half_height = cam.distance * np.tan(np.radians(fovy) / 2)
        scale = scene.height / (2 * half_height)
        return cls(scale=scale, cx=(scene.width - 1) / 2 + cam.lookat[0] * scale, cy=(scene.height - 1) / 2,
                   z0=cam.lookat[2])

    @property
    def ball_area(self) -> float:
        return float(np.pi * (bounce.RADIUS * self.scale) ** 2)

    def to_metres(self, col: np.ndarray, row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (col - self.cx) / self.scale, self.z0 - (row - self.cy) / self.scale


def _components(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per mask [M, H, W]: the areas [M, K] of its components (largest first, K = the most any mask has,
    zero-padded) and the column and row of each one's centre [M, K]."""
    lab = label_components(torch.from_numpy(masks)).numpy()
    m, h, w = lab.shape
    cols, rows = np.meshgrid(np.arange(w), np.arange(h))
    areas, cc, rr = [], [], []
    for i in range(m):
        ids, inv, counts = np.unique(lab[i].ravel(), return_inverse=True, return_counts=True)
        keep = ids != 0
        sc = np.bincount(inv, weights=cols.ravel())[keep] / counts[keep]
        sr = np.bincount(inv, weights=rows.ravel())[keep] / counts[keep]
        order = np.argsort(-counts[keep])
        areas.append(counts[keep][order]), cc.append(sc[order]), rr.append(sr[order])
    k = max(1, max(len(a) for a in areas))
    pad = lambda xs: np.stack([np.pad(x.astype(np.float64), (0, k - len(x))) for x in xs])  # noqa: E731
    return pad(areas), pad(cc), pad(rr)


def frame_flags(frames: np.ndarray, n_balls: int, pixels: PixelMap) -> np.ndarray:
    """Which rule holds for each ball in each frame: uint8 frames [T, H, W, 3] -> bool [T, n_balls, rules]."""
    t = len(frames)
    masks = ball_color_masks(frames)[:, :n_balls]  # [T, n, H, W]
    areas, cols, rows = _components(masks.reshape(t * n_balls, *masks.shape[-2:]))
    areas, cols, rows = (a.reshape(t, n_balls, -1) for a in (areas, cols, rows))
    a = pixels.ball_area
    total = areas.sum(-1)
    vanish = total < 0.35 * a
    big = (areas >= 0.25 * a).sum(-1)
    split = big >= 2
    size = ~vanish & ((areas[..., 0] < 0.4 * a) | (areas[..., 0] > 2.5 * a))
    colour = vanish & (big.max(-1, keepdims=True) >= 2)
    x, z = pixels.to_metres(cols[..., 0], rows[..., 0])
    slack = 0.5 * bounce.RADIUS
    wall = ~vanish & ((np.abs(x) > bounce.HALF_WIDTH + slack)
                      | (z < -slack) | (z > bounce.HEIGHT + slack))
    through = np.zeros_like(vanish)
    for i in range(n_balls):
        for j in range(n_balls):
            if i != j:
                d = np.hypot(x[:, i] - x[:, j], z[:, i] - z[:, j])
                through[:, i] |= ~vanish[:, i] & ~vanish[:, j] & (d < bounce.RADIUS)
    return np.stack([vanish, split, size, colour, wall, through], -1)


def abnormal(frames: np.ndarray, n_balls: int, pixels: PixelMap, persist: int = 2) -> dict[str, bool]:
    """Which rules a clip breaks (uint8 frames [T, H, W, 3]): a rule held by some ball on `persist`
    consecutive frames or more. The result has every rule of `RULES` and "abnormal" (any of them)."""
    flags = frame_flags(frames, n_balls, pixels)  # [T, n, R]
    out = {}
    for r, name in enumerate(RULES):
        f = flags[..., r]  # [T, n]
        run = np.zeros(f.shape[1], np.int64)
        best = 0
        for row in f:
            run = np.where(row, run + 1, 0)
            best = max(best, int(run.max()))
        out[name] = best >= persist
    out["abnormal"] = any(out[n] for n in RULES)
    return out
