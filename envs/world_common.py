"""What the single and the vector `DSV4World` env share: argument checks, observation spaces,
action checks and the observation of every row."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from worldsim.envs.world_batch import WorldBatch, real_array

OBS_TYPES = ("pixels", "state", "latent", "dict")


def observation_spaces(batch: WorldBatch) -> dict[str, spaces.Space]:
    cfg = batch.wm.cfg
    size, grid = cfg.tokenizer.image_size, cfg.dynamics.grid
    real = getattr(batch.real, "_gym_env", None)
    if real is not None:
        state_space = real.observation_space
    else:
        state_space = spaces.Box(-np.inf, np.inf, (batch.real.state_dim,), dtype=np.float64)
    return {
        "pixels": spaces.Box(0, 255, (size, size, 3), dtype=np.uint8),
        "state": state_space,
        "latent": spaces.Box(0, cfg.dynamics.codebook_size - 1, (grid, grid), dtype=np.int64),
    }


def _check_obs_type(obs_type: str) -> None:
    if obs_type not in OBS_TYPES:
        raise ValueError(f"obs_type must be one of {OBS_TYPES}, got {obs_type!r}")


def check_actions(actions: Any, space: spaces.Box, batch_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Checked, clipped float actions and a per-row count of clipped components.

    Raises:
        ValueError: for anything but real numbers (ints or floats; not bools, complex numbers, strings
            or objects), a wrong shape or a NaN / inf component (the env is left as it was).
    """
    a = real_array(actions, "action", batch_shape + space.shape)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"action must be finite, got {a.tolist()}")
    clipped = np.clip(a, space.low, space.high)
    n_clipped = (clipped != a).reshape(a.shape[: len(batch_shape)] + (-1,)).sum(-1)
    return clipped, n_clipped


class WorldEnvBase:
    """Argument handling shared by the single and the vector env."""

    def _setup(self, scene: str, checkpoint: str | None, obs_type: str, render_mode: str | None, device: str,
               context_frames: int, temperature: float, reward: str, max_episode_steps: int | None,
               num_envs: int, num_threads: int | None, precision: str = "auto") -> None:
        _check_obs_type(obs_type)
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        # State observations without rendering need no frames: the rollout carries action and state
        # tokens alone, at a fraction of a framed step's cost.
        frames = obs_type != "state" or render_mode is not None
        self.batch = WorldBatch(scene, num_envs, checkpoint, device, context_frames, temperature, reward, frames,
                                num_threads, precision)
        if max_episode_steps is None:
            max_episode_steps = self.batch.real.max_episode_steps
        if isinstance(max_episode_steps, bool) or not isinstance(max_episode_steps, (int, np.integer)) \
                or max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be an int >= 1, got {max_episode_steps!r}")
        self.scene, self.obs_type, self.reward_mode = scene, obs_type, reward
        self.max_episode_steps = int(max_episode_steps)
        self.render_mode = render_mode
        self._spaces = observation_spaces(self.batch)
        self._obs_space = (spaces.Dict(self._spaces) if obs_type == "dict" else self._spaces[obs_type])

    @property
    def precision(self) -> str:
        """The world model's inference precision, "fp32" or "bf16" (what `precision="auto"` resolved to)."""
        return self.batch.wm.precision

    def _obs_rows(self) -> dict[str, np.ndarray] | np.ndarray:
        """Observations of all rows, batched."""
        b = self.batch
        parts: dict[str, np.ndarray] = {}
        if self.obs_type in ("pixels", "dict"):
            parts["pixels"] = b.frames().copy()
        if self.obs_type in ("state", "dict"):
            parts["state"] = b.state.astype(self._spaces["state"].dtype, copy=True)
        if self.obs_type in ("latent", "dict"):
            parts["latent"] = b.codes.cpu().numpy().astype(np.int64)
        return parts if self.obs_type == "dict" else parts[self.obs_type]

    def _pick(self, out: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        key = "model" if self.reward_mode == "model" else "task"
        return out[f"reward_{key}"], out[f"terminated_{key}"]

    def _sample_seed(self) -> int:
        """A seed for token sampling from the env's own RNG: every reset is as reproducible as `reset(seed=...)`."""
        return int(self.np_random.integers(2**62))


def obs_row(obs: dict[str, np.ndarray] | np.ndarray, i: int):
    if isinstance(obs, dict):
        return {k: v[i] for k, v in obs.items()}
    return obs[i]
