"""Stable-Baselines3's `VecEnv` API over `DSV4WorldVector`, so SB3 trains on the batched world directly.

    from stable_baselines3 import PPO
    from worldsim.envs.sb3 import make_sb3_vec_env
    venv = make_sb3_vec_env(num_envs=16, scene="Reacher-v5")
    PPO("MlpPolicy", venv).learn(10_000)

Episodes reset themselves: a finished env's last observation is in `infos[i]["terminal_observation"]`,
and `infos[i]["TimeLimit.truncated"]` says when the episode was cut by the time limit. Each finished
episode's return, length and wall time are in `infos[i]["episode"]` as SB3's `Monitor` writes them, so
SB3 logs `rollout/ep_rew_mean` and `evaluate_policy` reads whole episodes without a `VecMonitor`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode

try:
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env.base_vec_env import VecEnv
except ImportError as exc:  # pragma: no cover - exercised only without the `rl` extra
    raise ImportError("worldsim.envs.sb3 needs stable-baselines3: pip install 'worldsim[rl]'") from exc

from worldsim.envs.world_env import DSV4WorldVector


class SB3WorldVecEnv(VecEnv):
    """Wraps a `DSV4WorldVector` built with `autoreset_mode="same_step"`."""

    def __init__(self, venv: DSV4WorldVector):
        if venv.metadata["autoreset_mode"] != AutoresetMode.SAME_STEP:
            raise ValueError("SB3WorldVecEnv needs a DSV4WorldVector made with autoreset_mode='same_step'")
        self.venv = venv
        self.render_mode = venv.render_mode
        super().__init__(venv.num_envs, venv.single_observation_space, venv.single_action_space)
        self._actions: np.ndarray | None = None
        self._returns, self._lengths = np.zeros(self.num_envs), np.zeros(self.num_envs, dtype=np.int64)
        self._t0 = time.time()

    def reset(self):
        seed = None if all(s is None for s in self._seeds) else list(self._seeds)
        opts = self._options[0] if self._options and self._options[0] else None
        obs, _ = self.venv.reset(seed=seed, options=opts)
        self._reset_seeds()
        self._reset_options()
        self._returns[:], self._lengths[:] = 0.0, 0
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self):
        obs, reward, terminated, truncated, info = self.venv.step(self._actions)
        dones = terminated | truncated
        self._returns += reward
        self._lengths += 1
        infos: list[dict[str, Any]] = []
        for i in range(self.num_envs):
            # A finished env's step is in final_info (the top level holds its next episode's start).
            src = info["final_info"] if dones[i] else info
            d = {"state": src["state"][i], "reward_model": float(src["reward_model"][i]),
                 "reward_task": float(src["reward_task"][i]), "clipped": int(src["clipped"][i])}
            if dones[i]:
                d["terminal_observation"] = info["final_obs"][i]
                d["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
                d["episode"] = {"r": round(float(self._returns[i]), 6), "l": int(self._lengths[i]),
                                "t": round(time.time() - self._t0, 6)}
                self._returns[i], self._lengths[i] = 0.0, 0
            infos.append(d)
        return obs, reward.astype(np.float32), dones, infos

    def close(self) -> None:
        self.venv.close()

    def get_images(self) -> Sequence[np.ndarray | None]:
        return list(self.venv.batch.frames().copy())

    def _indices(self, indices) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        if isinstance(indices, int):
            return [indices]
        return list(indices)

    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        return [getattr(self.venv, attr_name) for _ in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        raise AttributeError(f"the worlds share one batch; cannot set {attr_name!r} per env")

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list[Any]:
        fn = getattr(self.venv, method_name)
        return [fn(*method_args, **method_kwargs) for _ in self._indices(indices)]

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        # The episode statistics are `Monitor`'s, so SB3's checks for a Monitor hold.
        return [wrapper_class is Monitor for _ in self._indices(indices)]


def make_sb3_vec_env(num_envs: int = 16, **kwargs: Any) -> SB3WorldVecEnv:
    """A `DSV4WorldVector(num_envs, **kwargs)` behind SB3's VecEnv API."""
    return SB3WorldVecEnv(DSV4WorldVector(num_envs=num_envs, autoreset_mode="same_step", **kwargs))


__all__ = ["SB3WorldVecEnv", "make_sb3_vec_env"]
