"""Physical quantities read from state trajectories, so they apply to predicted states as well as true.

Everything here is a pure function of arrays and the scene's name or constants: where a body is
(each scene's `read_bodies`), what the `bounce` scene's energy is, when a ball hits something,
whether it sits inside a wall, and how many balls a frame shows. Trajectories are [..., T+1, S]
including the initial state, so an event at step t (1-based) happened between states t-1 and t.
"""

from __future__ import annotations

import numpy as np

from worldsim.envs import bounce, scene_class
from worldsim.eval.metrics import count_components

GRAVITY = 9.81
BALL_MASS = 4.0 / 3.0 * np.pi * bounce.RADIUS**3 * 1000.0  # MuJoCo's default density, 1000 kg/m^3


# --- named bodies ----------------------------------------------------------------------------------


def body_positions(scene: str, states: np.ndarray) -> np.ndarray:
    """World positions (metres) of the scene's named moving bodies, read from states [..., S]:
    [..., P, 3] in the order of `body_names(scene, S)`. Equal to MuJoCo's `xpos` on true states."""
    bodies = scene_class(scene).read_bodies(np.asarray(states, np.float64))
    return np.stack(list(bodies.values()), -2)


def body_names(scene: str, state_dim: int) -> list[str]:
    return list(scene_class(scene).read_bodies(np.zeros(state_dim)).keys())


# --- bounce: energy, contacts, walls, balls in frames ---------------------------------------------


def _balls(states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions and velocities [..., n, 2] (x, z) from bounce states [..., 4n]."""
    s = np.asarray(states, np.float64)
    n = s.shape[-1] // 4
    return s[..., : 2 * n].reshape(*s.shape[:-1], n, 2), s[..., 2 * n :].reshape(*s.shape[:-1], n, 2)


def bounce_energy(states: np.ndarray) -> np.ndarray:
    """Total mechanical energy (joules, potential from the floor at z = 0) of bounce states [..., 4n]."""
    pos, vel = _balls(states)
    return BALL_MASS * (GRAVITY * pos[..., 1] + 0.5 * (vel**2).sum(-1)).sum(-1)


def bounce_work(states: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """Work (joules) done on ball 0 by the actions up to each state: [..., T+1] (0 at the start).
    The push is a constant horizontal force over a step, so a step's work is force times distance."""
    x0 = np.asarray(states, np.float64)[..., 0]
    force = bounce.MAX_FORCE * np.clip(np.asarray(actions, np.float64)[..., 0], -1, 1)
    w = force * np.diff(x0, axis=-1)
    return np.concatenate([np.zeros((*w.shape[:-1], 1)), np.cumsum(w, -1)], -1)


def bounce_event_kinds(n_balls: int) -> list[str]:
    walls = ["floor", "ceiling", "wall_left", "wall_right"]
    kinds = [f"{w}:ball{i}" for i in range(n_balls) for w in walls]
    return kinds + [f"ball{i}:ball{j}" for i in range(n_balls) for j in range(i + 1, n_balls)]


def bounce_events(states: np.ndarray, dt: float, near: float = 0.3, min_dv: float = 0.5) -> np.ndarray:
    """Contact events of a bounce trajectory [..., T+1, 4n] -> bool [..., T+1, K] (K kinds, in the
    order of `bounce_event_kinds`; step 0 never has one).

    A ball hits a floor, ceiling or wall at step t when its velocity normal to that surface changes
    sign between states t-1 and t, by more than `min_dv` m/s beyond what gravity explains, with the
    ball within `near` metres of the surface at either state. Two balls collide when their normal
    relative velocity turns from approaching to separating by more than `min_dv`, within `near` of
    touching. (A ball's apex, or two balls passing close by, changes no velocity beyond gravity.)"""
    pos, vel = _balls(states)
    r, w, h = bounce.RADIUS, bounce.HALF_WIDTH, bounce.HEIGHT
    p0, p1, v0, v1 = pos[..., :-1, :, :], pos[..., 1:, :, :], vel[..., :-1, :, :], vel[..., 1:, :, :]
    dvx, dvz = v1[..., 0] - v0[..., 0], v1[..., 1] - v0[..., 1] + GRAVITY * dt
    lo, hi = np.minimum(p0, p1), np.maximum(p0, p1)
    walls = [
        (v0[..., 1] < 0) & (v1[..., 1] > 0) & (dvz > min_dv) & (lo[..., 1] - r < near),  # floor
        (v0[..., 1] > 0) & (v1[..., 1] < 0) & (dvz < -min_dv) & (hi[..., 1] + r > h - near),  # ceiling
        (v0[..., 0] < 0) & (v1[..., 0] > 0) & (dvx > min_dv) & (lo[..., 0] - r < -w + near),  # left
        (v0[..., 0] > 0) & (v1[..., 0] < 0) & (dvx < -min_dv) & (hi[..., 0] + r > w - near),  # right
    ]
    n = pos.shape[-2]
    cols = [walls[k][..., i] for i in range(n) for k in range(4)]
    for i in range(n):
        for j in range(i + 1, n):
            d0, d1 = p0[..., j, :] - p0[..., i, :], p1[..., j, :] - p1[..., i, :]
            u0, u1 = v0[..., j, :] - v0[..., i, :], v1[..., j, :] - v1[..., i, :]
            close = np.minimum(np.linalg.norm(d0, axis=-1), np.linalg.norm(d1, axis=-1)) < 2 * r + near
            turn = ((d0 * u0).sum(-1) < 0) & ((d1 * u1).sum(-1) > 0)
            cols.append(close & turn & (np.linalg.norm(u1 - u0, axis=-1) > min_dv))
    ev = np.stack(cols, -1)
    return np.concatenate([np.zeros_like(ev[..., :1, :]), ev], -2)


def energy_drift(energy: np.ndarray, events: np.ndarray, guard: int = 1) -> np.ndarray:
    """Relative energy change since the last contact, per step: [..., T+1] energies (less the work
    done by the actions) and bool events [..., T+1] -> [..., T+1].

    Step t's drift is |E_t - E_s| / |E_s|, where s is the last step <= t with an event (or 0): the
    state just after a contact starts a new conservative segment. The `guard` steps before an event
    score 0: a fast ball can end a step still inside a soft contact, its energy stored in the contact
    spring that `bounce_energy` does not count (seen: -30% at 4 m/s, flipping a step later)."""
    e = np.asarray(energy, np.float64)
    ev = np.asarray(events, bool).copy()
    ev[..., 0] = True
    idx = np.where(ev, np.arange(e.shape[-1]), 0)
    start = np.maximum.accumulate(idx, axis=-1)
    e0 = np.take_along_axis(e, start, -1)
    drift = np.abs(e - e0) / np.maximum(np.abs(e0), 1e-9)
    ahead = np.zeros_like(ev)
    for k in range(1, guard + 1):
        ahead[..., :-k] |= ev[..., k:]
    return np.where(ahead, 0.0, drift)


def penetration_depth(states: np.ndarray) -> np.ndarray:
    """How far (metres) each ball reaches into the floor, ceiling or walls: [..., 4n] -> [..., n]."""
    pos, _ = _balls(states)
    r, w, h = bounce.RADIUS, bounce.HALF_WIDTH, bounce.HEIGHT
    x, z = pos[..., 0], pos[..., 1]
    return np.maximum.reduce([np.zeros_like(x), r - z, z + r - h, -w - (x - r), x + r - w])


def ball_color_masks(frames: np.ndarray, min_saturation: int = 60) -> np.ndarray:
    """Which pixels show each ball's colour: uint8 frames [..., H, W, 3] -> bool [..., 3, H, W] for
    red, green and blue (the scene's ball colours; the box is grey, so saturation separates them)."""
    f = np.asarray(frames).astype(np.int16)
    saturated = (f.max(-1) - f.min(-1)) >= min_saturation
    dominant = f.argmax(-1)
    return np.stack([saturated & (dominant == c) for c in range(3)], -3)


def count_balls(frames: np.ndarray, n_balls: int, min_area: int = 6) -> np.ndarray:
    """Visible blobs of each ball's colour: uint8 frames [..., H, W, 3] -> int [..., n_balls].
    A ball is 6-7 pixels across at 64x64, about 35 pixels of area."""
    masks = ball_color_masks(frames)[..., :n_balls, :, :]
    return count_components(masks, min_area=min_area)
