"""Gymnasium's own MuJoCo tasks as scenes: wrapped, not rewritten.

The scene's state vector is the real env's observation, its action space is the real env's, and
`reset(seed=s)` reaches the same initial physics state as `gym.make(id).reset(seed=s)`. Only the
camera is ours: Gymnasium's default cameras leave the Reacher target a one-pixel dot at 64x64.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import gymnasium as gym
import numpy as np

from worldsim.envs.rendering import CameraSpec
from worldsim.envs.scene import Scene

SCENE_VERSION = 1


class GymTaskScene(Scene):
    """A Gymnasium MuJoCo task behind the Scene API. Subclasses set `env_id`, `camera` and the task's
    reward and termination as functions of the observation."""

    env_id: str
    camera: CameraSpec

    def __init__(self, width: int = 64, height: int = 64):
        self._gym_env = gym.make(self.env_id)
        self._env = self._gym_env.unwrapped
        self.name = self.env_id
        self.dt = float(self._env.dt)
        self.max_episode_steps = int(self._gym_env.spec.max_episode_steps)
        self.action_space = self._gym_env.action_space
        super().__init__(self._env.model, self._env.data, width, height, self.camera)
        self._obs = np.zeros(self._gym_env.observation_space.shape, dtype=np.float64)
        self._gym_env.reset(seed=None)

    @property
    def state_dim(self) -> int:
        return int(self._gym_env.observation_space.shape[0])

    def config(self) -> dict[str, Any]:
        return {
            "scene": self.name,
            "scene_version": SCENE_VERSION,
            "width": self.width,
            "height": self.height,
            "camera": dataclasses.asdict(self.camera),
            "frame_skip": int(self._env.frame_skip),
            "timestep": float(self.model.opt.timestep),
        }

    def _reset(self, seed: int | None) -> None:
        obs, _ = self._env.reset(seed=seed)
        self._obs = np.asarray(obs, dtype=np.float64)

    def _step(self, action: np.ndarray) -> None:
        obs, *_ = self._env.step(action.astype(np.float32))
        self._obs = np.asarray(obs, dtype=np.float64)

    def _set_qpos_qvel(self, qpos: np.ndarray, qvel: np.ndarray) -> None:
        self._env.set_state(qpos, qvel)
        self._obs = np.asarray(self._env._get_obs(), dtype=np.float64)

    def state(self) -> np.ndarray:
        return self._obs.copy()

    def close(self) -> None:
        super().close()
        self._gym_env.close()


class ReacherScene(GymTaskScene):
    """`Reacher-v5` seen from straight above; the target is drawn as a larger marker so it survives 64x64."""

    env_id = "Reacher-v5"
    camera = CameraSpec(lookat=(0.0, 0.0, 0.0), distance=0.55, azimuth=90.0, elevation=-90.0)

    def _markers(self):
        return [(self.data.body("target").xpos.copy(), 0.02, (0.9, 0.1, 0.1, 1.0))]

    @staticmethod
    def task_reward(next_state: np.ndarray, action: np.ndarray) -> np.ndarray:
        # Gymnasium v5: -||fingertip - target|| - 1.0 * ||a||^2 (v5 reward weights 1 and 1); the
        # observation's last two entries are (fingertip - target)[:2], and both bodies share z.
        s, a = np.asarray(next_state, np.float64), np.asarray(action, np.float64)
        return -np.linalg.norm(s[..., 8:10], axis=-1) - np.square(a).sum(-1)

    @staticmethod
    def task_terminated(next_state: np.ndarray) -> np.ndarray:
        return np.zeros(np.asarray(next_state).shape[:-1], dtype=bool)


class InvertedPendulumScene(GymTaskScene):
    """`InvertedPendulum-v5` seen from the side, the whole rail in view."""

    env_id = "InvertedPendulum-v5"
    camera = CameraSpec(lookat=(0.0, 0.0, 0.15), distance=2.9, azimuth=90.0, elevation=0.0)

    @staticmethod
    def task_terminated(next_state: np.ndarray) -> np.ndarray:
        s = np.asarray(next_state)
        return ~np.all(np.isfinite(s), axis=-1) | (np.abs(s[..., 1]) > 0.2)

    @staticmethod
    def task_reward(next_state: np.ndarray, action: np.ndarray) -> np.ndarray:
        return (~InvertedPendulumScene.task_terminated(next_state)).astype(np.float64)


class PusherScene(GymTaskScene):
    """`Pusher-v5` seen from above the table: the arm, the object and the goal."""

    env_id = "Pusher-v5"
    camera = CameraSpec(lookat=(0.35, -0.3, -0.3), distance=1.9, azimuth=90.0, elevation=-90.0)

    @staticmethod
    def task_reward(next_state: np.ndarray, action: np.ndarray) -> np.ndarray:
        # Gymnasium v5: -0.5 ||object - tips_arm|| - 1.0 ||object - goal|| - 0.1 ||a||^2, with
        # tips_arm, object and goal at observation[14:17], [17:20], [20:23].
        s, a = np.asarray(next_state, np.float64), np.asarray(action, np.float64)
        tips, obj, goal = s[..., 14:17], s[..., 17:20], s[..., 20:23]
        return (
            -0.5 * np.linalg.norm(obj - tips, axis=-1)
            - np.linalg.norm(obj - goal, axis=-1)
            - 0.1 * np.square(a).sum(-1)
        )

    @staticmethod
    def task_terminated(next_state: np.ndarray) -> np.ndarray:
        return np.zeros(np.asarray(next_state).shape[:-1], dtype=bool)
