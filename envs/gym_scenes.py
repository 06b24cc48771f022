"""Gymnasium's own MuJoCo tasks as scenes: wrapped, not rewritten.

The scene's state vector is the real env's observation, its action space is the real env's, and
`reset(seed=s)` reaches the same initial physics state as `gym.make(id).reset(seed=s)`. Only the
camera is ours: Gymnasium's default cameras leave the Reacher target a one-pixel dot at 64x64.
Each task is its own module (`reacher`, `pendulum`, `pusher`) on this base.
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
    """A Gymnasium MuJoCo task behind the Scene API. Subclasses set `name` (the Gymnasium id), `camera`
    and the task's reward and termination as functions of the observation."""

    camera: CameraSpec

    def __init__(self, width: int = 64, height: int = 64):
        self._gym_env = gym.make(self.name)
        self._env = self._gym_env.unwrapped
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

