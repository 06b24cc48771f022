"""`InvertedPendulum-v5`: Gymnasium's cart-pole balancing task, seen from the side, the whole rail in view.

State: the real env's observation, `[cart x, pole angle, their velocities]`. The scripted controller
is LQR about upright.
"""

from __future__ import annotations

import mujoco
import numpy as np

from worldsim.envs.gym_scenes import GymTaskScene
from worldsim.envs.rendering import CameraSpec


def lqr_gain(model: mujoco.MjModel, dt: float) -> np.ndarray:
    """LQR gain for the cart-pole, from MuJoCo's own finite-difference linearisation at upright."""
    m, d = model, mujoco.MjData(model)
    frame_skip = round(dt / m.opt.timestep)

    def env_step(x: np.ndarray, u: np.ndarray) -> np.ndarray:
        d.qpos[:], d.qvel[:], d.ctrl[:] = x[: m.nq], x[m.nq :], u
        mujoco.mj_step(m, d, nstep=frame_skip)
        return np.concatenate([d.qpos, d.qvel])

    # Central differences over one whole env step (the model integrates with RK4, which
    # mjd_transitionFD does not support).
    nx, eps = m.nq + m.nv, 1e-5
    x0, u0 = np.zeros(nx), np.zeros(m.nu)
    Ad = np.stack([(env_step(x0 + eps * e, u0) - env_step(x0 - eps * e, u0)) / (2 * eps) for e in np.eye(nx)], 1)
    Bd = np.stack([(env_step(x0, u0 + eps * e) - env_step(x0, u0 - eps * e)) / (2 * eps) for e in np.eye(m.nu)], 1)
    Q, R = np.diag([1.0, 20.0, 1.0, 2.0]), np.eye(m.nu) * 0.05
    P = Q.copy()
    for _ in range(2000):  # discrete Riccati iteration
        K = np.linalg.solve(R + Bd.T @ P @ Bd, Bd.T @ P @ Ad)
        P = Q + Ad.T @ P @ (Ad - Bd @ K)
    return K


class InvertedPendulumScene(GymTaskScene):
    """`InvertedPendulum-v5` seen from the side; see the module docstring."""

    name = "InvertedPendulum-v5"
    description = "Gymnasium's cart-pole balancing task (side view)"
    camera = CameraSpec(lookat=(0.0, 0.0, 0.15), distance=2.9, azimuth=90.0, elevation=0.0)
    # 0.08 keeps most episodes balanced for 1000 steps, 0.2 drops them within ~100.
    scripted_noise = 0.08

    @staticmethod
    def task_terminated(next_state: np.ndarray) -> np.ndarray:
        s = np.asarray(next_state)
        return ~np.all(np.isfinite(s), axis=-1) | (np.abs(s[..., 1]) > 0.2)

    @staticmethod
    def task_reward(next_state: np.ndarray, action: np.ndarray) -> np.ndarray:
        return (~InvertedPendulumScene.task_terminated(next_state)).astype(np.float64)

    def physics_from_state(self, state: np.ndarray) -> np.ndarray:
        """The observation is qpos (cart, angle) then qvel."""
        return np.asarray(state, np.float64).copy()

    @staticmethod
    def read_bodies(states: np.ndarray) -> dict[str, np.ndarray]:
        # The pole runs from the cart to (0.001, 0, 0.6) in its own frame, which turns by the angle
        # about the y axis.
        s = np.asarray(states, np.float64)
        x, th = s[..., 0], s[..., 1]
        zero = np.zeros_like(x)
        cart = np.stack([x, zero, zero], -1)
        tip = np.stack([x + 0.001 * np.cos(th) + 0.6 * np.sin(th), zero, 0.6 * np.cos(th) - 0.001 * np.sin(th)], -1)
        return {"cart": cart, "pole_tip": tip}

    def observed_action(self, state: np.ndarray, cache: dict) -> np.ndarray:
        """LQR to upright about a cart set-point `cache["x_ref"]`; the state is the whole physics state
        (qpos, qvel), so this is also the controller on the true physics."""
        if "K" not in cache:
            cache["K"] = lqr_gain(self.model, self.dt)
        x = np.array(state, dtype=np.float64)
        # Drift the cart set-point slowly so balanced episodes still move along the rail.
        x[0] -= cache.setdefault("x_ref", 0.0)
        return -(cache["K"] @ x)
