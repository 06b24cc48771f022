"""`DSV4World-v0`: Gymnasium environments whose step function is the world model's latent rollout.

    import gymnasium as gym, worldsim
    env = gym.make("DSV4World-v0", scene="Reacher-v5", obs_type="state")
    envs = gym.make_vec("DSV4World-v0", num_envs=64)          # one batched model call per step

Both classes share `WorldBatch`: N rollouts in one `WorldModel` handle. A reset asks MuJoCo for the
real initial frame and state (the same physics state as the real scene's `reset(seed=s)`), encodes
the frame, and restarts only the rows being reset; a step is one KV-cached model step for all rows.
Frames are decoded only when an observation or `render()` needs them.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import EnvSpec, make

from worldsim.envs.world_common import WorldEnvBase, check_actions, obs_row
from worldsim.envs.world_vector import DSV4WorldVector

__all__ = ["DSV4World", "DSV4WorldVector"]


def _make_time_limit(frame) -> int | None:
    """The `TimeLimit` that `gymnasium.make`, running in `frame`, puts on the env it is making; None when
    `frame` is not `make`'s or it puts none.

    `gym.make(id, max_episode_steps=n)` takes `n` for its own `TimeLimit(n)` and hands the env a spec
    with `max_episode_steps=None`, so `n` is visible only in `make`'s frame, the caller of the spec setter.
    """
    if frame is None or frame.f_code is not make.__code__:
        return None
    n = frame.f_locals.get("max_episode_steps")
    if n is None:  # make's own rule: its argument, else the spec's
        n = getattr(frame.f_locals.get("env_spec"), "max_episode_steps", None)
    ok = isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 1  # -1: make adds none
    return int(n) if ok else None


class DSV4World(WorldEnvBase, gym.Env):
    """A Gymnasium env whose dynamics are a learned world model (the DeepSeek-V4-style transformer).

    ## Description
    The real scene (a Gymnasium MuJoCo task or a worldsim physics scene) is replaced by its learned
    model: each `step` is one batched, KV-cached latent rollout step of `worldsim.model.WorldModel`,
    whose transformer predicts the next frame's tokens, the next state, the reward and termination.
    MuJoCo is used only at `reset`, for the true first state and frame. With `obs_type="state"` and no
    `render_mode` the rollout carries no frames: each step is the action and state tokens alone (the
    same transformer, a fraction of a framed step's cost), so its states differ slightly from a
    framed rollout's.

    ## Action Space
    The scene's own (`Reacher-v5`: `Box(-1, 1, (2,))`). Out-of-bounds actions are clipped; the number
    of clipped components is in `info["clipped"]` (this step) and `info["clipped_total"]` (episode).
    Actions must be real numbers (ints or floats): bool, complex, string or object actions, NaN or inf
    components, or a wrong shape raise `ValueError` and leave the env as it was.

    ## Observation Space
    `obs_type="state"`: the scene's state vector (for Gymnasium tasks exactly the real env's
    observation space, so a policy transfers); `"pixels"`: the decoded frame, uint8 `(64, 64, 3)`;
    `"latent"`: the frame's token grid, int64 `(8, 8)` in `[0, codebook)`; `"dict"`: all three.

    ## Rewards
    `reward="model"` (default): the model's own reward, from the transformer's reward head (or from
    an outcome head on the predicted state in a world that has one, such as the `mlp` baselines). `reward="task"`:
    the scene's own reward function applied to the predicted state and the action. Both are in
    `info` (`reward_model`, `reward_task`), with the predicted state (`info["state"]`).

    ## Starting State
    `reset(seed=s)` puts MuJoCo in the same initial physics state as the real scene's
    `reset(seed=s)`, renders it, and encodes the frame with the true state; `options={"qpos": ...,
    "qvel": ...}` starts from a given physics state instead: finite real numbers within float32's
    range, nq and nv of them, whose initial state lies inside the model's state bounds (when it has
    them); others raise `ValueError` and leave the env as it was. With `context_frames=C > 1`, MuJoCo
    also runs C - 1 steps under the zero action and the model starts from those C real steps.
    `options={"prompt": "The red ball starts high on the left."}` starts from the situation a sentence
    describes instead, in a world with a prompt prefix (`worldsim train prompt`; context_frames=1): the
    model samples the initial state (seeded by `seed`) and renders the first frame, and
    `info["prompt"]` holds the prompt. A prompt the scene cannot read or make raises `ValueError` (a
    `PromptError`) saying what is not understood or not possible, and leaves the env as it was.

    ## Episode End
    Terminated when the model's termination fires (`reward="model"`; from the outcome head, as the
    reward) or the scene's termination function holds on the predicted state (`reward="task"`); both
    are in `info`. Truncated after
    `max_episode_steps` (the scene's own by default: Reacher 50, InvertedPendulum 1000, bounce 240;
    `gym.make(..., max_episode_steps=n)` sets it too), which `env.spec.max_episode_steps` reports.

    ## Arguments
    `scene="Reacher-v5"`, `checkpoint=None` (the shipped model for the scene, or a checkpoint
    directory), `obs_type="state"`, `render_mode=None | "rgb_array"`, `device="auto"`,
    `context_frames=1`, `temperature=0.0` (0 = argmax, deterministic; > 0 samples tokens, seeded at
    every reset from the env's `np_random`, so `reset(seed=...)` fixes all episodes after it),
    `reward="model" | "task"`, `max_episode_steps=None`, `num_threads=None` (the torch threads of the
    env's own work: None is one thread, the fastest for a single env and free of stalls on a loaded
    machine; the caller's setting is restored after each call; always one in a forked worker),
    `precision="auto" | "fp32" | "bf16"` (the model's inference precision,
    `WorldModel.set_precision`: "auto" is bf16 where the device has bf16 matrix units, such as a CPU
    with AMX or a recent GPU, and fp32 elsewhere; `env.unwrapped.precision` says which it took).

    ## Version History
    - v0: first release.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 24}

    def __init__(self, scene: str = "Reacher-v5", checkpoint: str | None = None, obs_type: str = "state",
                 render_mode: str | None = None, device: str = "auto", context_frames: int = 1,
                 temperature: float = 0.0, reward: str = "model", max_episode_steps: int | None = None,
                 num_threads: int | None = None, precision: str = "auto"):
        self._spec = None
        self._own_max_episode_steps = max_episode_steps is not None
        self._setup(scene, checkpoint, obs_type, render_mode, device, context_frames, temperature, reward,
                    max_episode_steps, num_envs=1, num_threads=num_threads, precision=precision)
        self.metadata = {**self.metadata, "render_fps": round(1.0 / self.batch.dt)}
        self.action_space = self.batch.action_space
        self.observation_space = self._obs_space
        self._steps, self._clipped_total, self._done = 0, 0, True

    @property
    def spec(self) -> EnvSpec | None:
        """The spec `gym.make` gave the env, with the episode length it truncates at."""
        if self._spec is None:
            return None
        return dataclasses.replace(self._spec, max_episode_steps=self.max_episode_steps)

    @spec.setter
    def spec(self, value: EnvSpec | None) -> None:
        # `gym.make(..., max_episode_steps=n)` wraps the env in `TimeLimit(n)`; unless the env was given
        # its own `max_episode_steps`, it adopts n, or it would still truncate at the scene's length.
        self._spec = value
        if value is None or self._own_max_episode_steps:
            return
        n = value.max_episode_steps
        if n is None:
            n = _make_time_limit(sys._getframe(1))
        if isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 1:
            self.max_episode_steps = int(n)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self.batch.check_options(np.array([0]), [options])  # before any RNG moves: a refused reset changes nothing
        super().reset(seed=seed)
        if seed is None and not self.batch._started[0]:
            seed = int(self.np_random.integers(2**31))  # a fresh env is still reproducible from np_random
        self.batch.reset_rows(np.array([0]), [seed], [options], sample_seed=self._sample_seed())
        self._steps, self._clipped_total, self._done = 0, 0, False
        info = {"state": self.batch.state[0].copy(), "step": 0}
        if self.batch.prompts[0] is not None:
            info["prompt"] = self.batch.prompts[0]
        return obs_row(self._obs_rows(), 0), info

    def step(self, action):
        if self.batch.handle is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        a, n_clipped = check_actions(action, self.action_space, ())
        out = self.batch.step(a[None].astype(np.float32))
        self._steps += 1
        self._clipped_total += int(n_clipped)
        reward, term = self._pick(out)
        terminated = bool(term[0])
        truncated = bool(self._steps >= self.max_episode_steps and not terminated)
        info = {
            "state": self.batch.state[0].copy(),
            "reward_model": float(out["reward_model"][0]),
            "reward_task": float(out["reward_task"][0]),
            "terminated_model": bool(out["terminated_model"][0]),
            "terminated_task": bool(out["terminated_task"][0]),
            "clipped": int(n_clipped),
            "clipped_total": self._clipped_total,
            "step": self._steps,
        }
        return obs_row(self._obs_rows(), 0), float(reward[0]), terminated, truncated, info

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        if self.batch.handle is None:
            raise gym.error.ResetNeeded("call reset() before render()")
        return self.batch.frames()[0].copy()

    def close(self):
        self.batch.close()
