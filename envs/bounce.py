"""`bounce`: balls in a walled box under gravity, for pure physics.

One to three balls move in the vertical x-z plane (two slide joints each) inside a 2 m x 2 m box.
Contacts are frictionless and bouncy (MuJoCo soft contacts with damping ratio below one give a
restitution of about 0.75), so between contacts total energy is conserved up to the RK4 integrator's
error. The action is a small horizontal force on ball 0. One step is 1/24 s (20 physics substeps), so
240 steps are 10 s of 24-fps video.

State: ball positions then velocities, `[x0, z0, x1, z1, ..., vx0, vz0, vx1, vz1, ...]` (metres, m/s).
Task: keep ball 0 near the middle of the box; reward `-|x0|`, never terminates.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np

from worldsim.envs.rendering import CameraSpec
from worldsim.envs.scene import Scene

SCENE_VERSION = 2  # in `config()`: a change to what the scene records bumps it
HALF_WIDTH = 1.0  # interior spans x in [-1, 1]
HEIGHT = 2.0  # interior spans z in [0, 2]
RADIUS = 0.12
SUBSTEPS = 20
DT = 1.0 / 24.0
MAX_FORCE = 10.0  # newtons at |action| = 1, about 2 m/s^2 on a 7 kg ball
BALL_COLORS = ("0.9 0.15 0.15 1", "0.15 0.75 0.2 1", "0.2 0.35 0.95 1")


def bounce_xml(n_balls: int) -> str:
    """The MJCF of the scene with `n_balls` balls."""
    wall_t = 0.05
    balls = []
    for i in range(n_balls):
        balls.append(
            f"""
    <body name="ball{i}" pos="0 0 0">
      <joint name="ball{i}_x" type="slide" axis="1 0 0"/>
      <joint name="ball{i}_z" type="slide" axis="0 0 1"/>
      <geom name="ball{i}" type="sphere" size="{RADIUS}" rgba="{BALL_COLORS[i]}"/>
    </body>"""
        )
    w, h, t = HALF_WIDTH, HEIGHT, wall_t
    return f"""
<mujoco model="bounce">
  <option timestep="{DT / SUBSTEPS:.10f}" integrator="RK4" gravity="0 0 -9.81"/>
  <visual><global offwidth="256" offheight="256"/><headlight ambient="0.5 0.5 0.5" diffuse="0.5 0.5 0.5"/></visual>
  <default>
    <!-- frictionless, bouncy contacts: damping ratio 0.1 on a 10 ms time constant -->
    <geom condim="1" solref="0.01 0.1" solimp="0.95 0.99 0.001"/>
  </default>
  <worldbody>
    <body name="back" pos="0 0.4 {h / 2}"><geom type="box" size="{w + 2 * t} 0.01 {h / 2 + 2 * t}"
      rgba="0.92 0.92 0.92 1" contype="0" conaffinity="0" density="0"/></body>
    <body name="floor" pos="0 0 {-t}"><geom type="box" size="{w + 2 * t} 0.3 {t}"
      rgba="0.35 0.35 0.35 1" density="0"/></body>
    <body name="ceiling" pos="0 0 {h + t}"><geom type="box" size="{w + 2 * t} 0.3 {t}"
      rgba="0.35 0.35 0.35 1" density="0"/></body>
    <body name="wall_left" pos="{-w - t} 0 {h / 2}"><geom type="box" size="{t} 0.3 {h / 2}"
      rgba="0.35 0.35 0.35 1" density="0"/></body>
    <body name="wall_right" pos="{w + t} 0 {h / 2}"><geom type="box" size="{t} 0.3 {h / 2}"
      rgba="0.35 0.35 0.35 1" density="0"/></body>
    {"".join(balls)}
  </worldbody>
  <actuator>
    <motor name="push" joint="ball0_x" gear="{MAX_FORCE}" ctrlrange="-1 1" ctrllimited="true"/>
  </actuator>
</mujoco>
"""


class BounceScene(Scene):
    """Balls bouncing in a box; see the module docstring."""

    name = "bounce"
    description = "1-3 balls bouncing in a walled box under gravity (ours, MJCF)"
    dt = DT
    max_episode_steps = 240
    energy_conserved = True
    has_balls = True
    camera = CameraSpec(lookat=(0.0, 0.0, HEIGHT / 2), distance=2.75, azimuth=90.0, elevation=0.0)

    def __init__(self, width: int = 64, height: int = 64, n_balls: int = 3):
        if isinstance(n_balls, bool) or not isinstance(n_balls, int) or not 1 <= n_balls <= 3:
            raise ValueError(f"bounce: n_balls must be 1, 2 or 3, got {n_balls!r}")
        self.n_balls = n_balls
        model = mujoco.MjModel.from_xml_string(bounce_xml(n_balls))
        data = mujoco.MjData(model)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        super().__init__(model, data, width, height, self.camera)
        self._rng = np.random.default_rng()
        self._step_contacts = None
        self._ball_body = [model.body(f"ball{i}").id for i in range(n_balls)]
        self._wall_body = {name: model.body(name).id for name in ("floor", "ceiling", "wall_left", "wall_right")}
        self.reset()

    @property
    def state_dim(self) -> int:
        return 4 * self.n_balls

    @classmethod
    def options_for_state_dim(cls, state_dim: int) -> dict[str, Any]:
        return {"n_balls": state_dim // 4}

    def config(self) -> dict[str, Any]:
        return {
            "scene": self.name,
            "scene_version": SCENE_VERSION,
            "width": self.width,
            "height": self.height,
            "n_balls": self.n_balls,
            "camera": dataclasses.asdict(self.camera),
            "radius": RADIUS,
            "substeps": SUBSTEPS,
        }

    def _reset_balls(self, seed: int | None) -> None:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        mujoco.mj_resetData(self.model, self.data)
        lo = np.array([-HALF_WIDTH + RADIUS, RADIUS + 0.3])
        hi = np.array([HALF_WIDTH - RADIUS, HEIGHT - RADIUS])
        pos: list[np.ndarray] = []
        while len(pos) < self.n_balls:
            p = self._rng.uniform(lo, hi)
            if all(np.linalg.norm(p - q) > 2.5 * RADIUS for q in pos):
                pos.append(p)
        vel = self._rng.uniform(-3.0, 3.0, size=(self.n_balls, 2))
        self._set_qpos_qvel(np.concatenate(pos), vel.ravel())

    def _step(self, action: np.ndarray) -> None:
        self.data.ctrl[:] = action
        # Impacts last a few milliseconds, far less than a step: record contacts at every substep so
        # `contacts()` reports each one in the step it happened. A fast impact can even begin and end
        # inside one RK4 substep, so that `data.contact` never shows it; those are found from the
        # velocity change the contact force left behind (`_impacts`).
        self._step_contacts = np.zeros(len(self.contact_pairs), dtype=bool)
        m, n = self.model, 2 * self.n_balls
        # A substep's velocity change in free flight: gravity, and the push on ball 0's x.
        free = np.zeros(n)
        free[1::2] = m.opt.gravity[2]
        free[0] += self.data.ctrl[0] * m.actuator_gear[0, 0] / m.body_mass[self._ball_body[0]]
        free *= m.opt.timestep
        for _ in range(SUBSTEPS):
            qvel = self.data.qvel[:n].copy()
            mujoco.mj_step(self.model, self.data)
            self._step_contacts |= super().contacts()
            self._step_contacts |= self._impacts(self.data.qvel[:n] - qvel - free)

    def _impacts(self, impulse: np.ndarray, threshold: float = 0.05) -> np.ndarray:
        """Contact pairs that must have touched during the last substep, given each ball's velocity
        change beyond free flight `impulse` [2 * n_balls]: a ball whose change exceeds `threshold` m/s
        was hit, by the nearest surface (wall, floor, ceiling or ball) on the side the impulse came from."""
        n = self.n_balls
        impulse = impulse.reshape(n, 2)
        out = np.zeros(len(self.contact_pairs), dtype=bool)
        pos = self.data.qpos[: 2 * n].reshape(n, 2)
        for i in np.flatnonzero(np.linalg.norm(impulse, axis=1) > threshold):
            x, z = pos[i]
            # (gap to the surface, its outward normal, its body) for every candidate
            cands = [(z - RADIUS, (0.0, 1.0), self._wall_body["floor"]),
                     (HEIGHT - z - RADIUS, (0.0, -1.0), self._wall_body["ceiling"]),
                     (x + HALF_WIDTH - RADIUS, (1.0, 0.0), self._wall_body["wall_left"]),
                     (HALF_WIDTH - x - RADIUS, (-1.0, 0.0), self._wall_body["wall_right"])]
            for j in range(n):
                if j != i:
                    delta = pos[i] - pos[j]
                    dist = float(np.linalg.norm(delta))
                    cands.append((dist - 2 * RADIUS, tuple(delta / max(dist, 1e-12)), self._ball_body[j]))
            facing = [c for c in cands if np.dot(c[1], impulse[i]) > 0]
            body = min(facing or cands, key=lambda c: c[0])[2]
            k = self._pair_matrix[self._ball_body[i], body]
            if k >= 0:
                out[k] = True
        return out

    def _reset(self, seed: int | None) -> None:
        self._step_contacts = None
        self._reset_balls(seed)

    def contacts(self) -> np.ndarray:
        """Pairs in contact at any physics substep of the last step (at reset: in contact now)."""
        now = super().contacts()
        return now if self._step_contacts is None else now | self._step_contacts

    def set_physics_state(self, physics_state: np.ndarray) -> None:
        self._step_contacts = None
        super().set_physics_state(physics_state)

    def state(self) -> np.ndarray:
        return self.physics_state()

    def start_is_valid(self, states: np.ndarray) -> np.ndarray:
        """Balls inside the box and apart (a reset keeps them 2.5 radii apart; overlapping balls would
        fly apart at tens of m/s in the first step)."""
        s = np.asarray(states, np.float64)
        n = s.shape[-1] // 4
        pos = s[..., : 2 * n].reshape(*s.shape[:-1], n, 2)
        inside = ((np.abs(pos[..., 0]) <= HALF_WIDTH - RADIUS) & (pos[..., 1] >= RADIUS)
                  & (pos[..., 1] <= HEIGHT - RADIUS)).all(-1)
        apart = np.ones(s.shape[:-1], dtype=bool)
        for i in range(n):
            for j in range(i + 1, n):
                apart &= np.linalg.norm(pos[..., i, :] - pos[..., j, :], axis=-1) >= 2 * RADIUS
        return inside & apart

    def physics_from_state(self, state: np.ndarray) -> np.ndarray:
        """The state is the physics state (positions then velocities)."""
        return np.asarray(state, np.float64).copy()

    def ball_positions(self) -> np.ndarray:
        """[n_balls, 2] (x, z) in metres."""
        return self.data.qpos.reshape(self.n_balls, 2).copy()

    @staticmethod
    def task_reward(next_state: np.ndarray, action: np.ndarray) -> np.ndarray:
        return -np.abs(np.asarray(next_state)[..., 0])

    @staticmethod
    def read_bodies(states: np.ndarray) -> dict[str, np.ndarray]:
        s = np.asarray(states, np.float64)
        n, y = s.shape[-1] // 4, np.zeros(s.shape[:-1])
        return {f"ball{i}": np.stack([s[..., 2 * i], y, s[..., 2 * i + 1]], -1) for i in range(n)}

    def observed_action(self, state: np.ndarray, cache: dict) -> np.ndarray:
        """Push ball 0 towards the middle of the box. The state is the physics state (qpos, qvel): ball
        0's x at 0 and its x velocity at 2 * n_balls."""
        return np.array([-1.5 * state[0] - 0.5 * state[2 * self.n_balls]])
