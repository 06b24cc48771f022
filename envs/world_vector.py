"""`DSV4WorldVector`: N `DSV4World` environments as one batch (one model call per step).

    envs = gym.make_vec("DSV4World-v0", num_envs=64)
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv

from worldsim.envs.world_batch import describe_value, real_array
from worldsim.envs.world_common import WorldEnvBase, check_actions, obs_row

# The step's own info keys (beyond a reset's `state` and `step`) and their dtypes: those Gymnasium's vector
# envs give the single env's values (Python floats, bools and ints).
STEP_INFO_DTYPES = {"reward_model": np.float64, "reward_task": np.float64, "terminated_model": np.bool_,
                    "terminated_task": np.bool_, "clipped": np.int64, "clipped_total": np.int64}


class DSV4WorldVector(WorldEnvBase, VectorEnv):
    """N `DSV4World` environments stepped as one batch on one device (one model call per step).

    Same arguments as `DSV4World`, plus `num_envs` and `autoreset_mode` ("next_step", Gymnasium's
    default, or "same_step": the final observation is in `info["final_obs"]`, the final info in
    `info["final_info"]`). `info` is laid out as Gymnasium's vector envs lay out the single env's: each
    key `k` an array over the envs, with a bool mask `_k` of the envs that have it this step; an env that
    only resets has a reset's keys (`state`, `step`) alone. `reset(seed=s)` seeds
    env i with s + i, and `np_random` seeds token sampling at every reset and autoreset. Reset options
    are [N, nq] / [N, nv] arrays, or `{"prompt": str or N of them}` (each env's start generated from its
    prompt; an env's autoreset starts again from its prompt), checked as the single env's before any
    row restarts. Each env truncates itself after `max_episode_steps`. `num_threads=None` runs up to
    16 envs on one torch thread and more on the caller's setting (restored after each call).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 24, "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int = 1, scene: str = "Reacher-v5", checkpoint: str | None = None,
                 obs_type: str = "state", render_mode: str | None = None, device: str = "auto",
                 context_frames: int = 1, temperature: float = 0.0, reward: str = "model",
                 max_episode_steps: int | None = None, autoreset_mode: str | AutoresetMode = "next_step",
                 num_threads: int | None = None, precision: str = "auto"):
        try:
            mode = AutoresetMode(autoreset_mode) if isinstance(autoreset_mode, AutoresetMode) else \
                {"next_step": AutoresetMode.NEXT_STEP, "same_step": AutoresetMode.SAME_STEP}[autoreset_mode]
        except KeyError:
            raise ValueError(f"autoreset_mode must be 'next_step' or 'same_step', got {autoreset_mode!r}") from None
        if mode == AutoresetMode.DISABLED:
            raise ValueError("autoreset_mode must be 'next_step' or 'same_step'")
        self._setup(scene, checkpoint, obs_type, render_mode, device, context_frames, temperature, reward,
                    max_episode_steps, num_envs=num_envs, num_threads=num_threads, precision=precision)
        self.num_envs = self.batch.num_envs
        self.metadata = {**self.metadata, "render_fps": round(1.0 / self.batch.dt), "autoreset_mode": mode}
        self.single_action_space = self.batch.action_space
        self.single_observation_space = self._obs_space
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, self.num_envs)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, self.num_envs)
        self._steps = np.zeros(self.num_envs, dtype=np.int64)
        self._clipped_total = np.zeros(self.num_envs, dtype=np.int64)
        self._needs_reset = np.zeros(self.num_envs, dtype=bool)

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None):
        rows = np.arange(self.num_envs)
        opts = self._row_options(options)
        self.batch.check_options(rows, opts)  # before any RNG moves: a refused reset changes nothing
        if seed is None:
            seeds: list[int | None] = [None] * self.num_envs
        elif isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
            seeds = [int(seed) + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"seed must be an int, None, or a list of {self.num_envs} seeds, got {len(seeds)}")
        if seed is not None:
            super().reset(seed=seeds[0])
        elif not self.batch._started.all():  # a fresh env is still reproducible from np_random
            base = int(self.np_random.integers(2**31))
            seeds = [base + i for i in range(self.num_envs)]
        self.batch.reset_rows(rows, seeds, opts, sample_seed=self._sample_seed())
        self._steps[:] = 0
        self._clipped_total[:] = 0
        self._needs_reset[:] = False
        return self._obs_rows(), self._reset_info()

    def _row_options(self, options: dict[str, Any] | None) -> list[dict | None]:
        """Per-row options from vector options ('qpos' [N, nq] and 'qvel' [N, nv], or 'prompt': one str
        for every row or a list of N); the batch checks each row."""
        if options is None or (isinstance(options, dict) and not options):
            return [None] * self.num_envs
        if not isinstance(options, dict):
            raise ValueError(f"reset options must be a dict or None, got {describe_value(options)}")
        if set(options) - {"qpos", "qvel", "prompt"}:
            raise ValueError(f"reset options may hold 'prompt', or 'qpos' and 'qvel', got {sorted(options)}")
        if "prompt" in options:
            if set(options) != {"prompt"}:
                raise ValueError("reset options: a prompt sets the whole start; give 'prompt' alone, not with "
                                 "qpos/qvel")
            prompts = options["prompt"]
            if isinstance(prompts, str):
                prompts = [prompts] * self.num_envs
            if not isinstance(prompts, (list, tuple)) or len(prompts) != self.num_envs:
                raise ValueError(f"vector reset option 'prompt' must be a str or a list of {self.num_envs} str, got "
                                 f"{describe_value(options['prompt'])}")
            return [{"prompt": p} for p in prompts]
        if ("qpos" in options) != ("qvel" in options):
            raise ValueError("reset options must give both 'qpos' and 'qvel', or neither")
        m, n = self.batch.real.model, self.num_envs
        qpos = real_array(options["qpos"], f"vector reset option 'qpos' ([num_envs, nq] = [{n}, {m.nq}])", (n, m.nq))
        qvel = real_array(options["qvel"], f"vector reset option 'qvel' ([num_envs, nv] = [{n}, {m.nv}])", (n, m.nv))
        return [{"qpos": qpos[i], "qvel": qvel[i]} for i in range(n)]

    def step(self, actions):
        if self.batch.handle is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        a, n_clipped = check_actions(actions, self.single_action_space, (self.num_envs,))
        mode = self.metadata["autoreset_mode"]
        # Next-step autoreset: the rows that ended last step only reset. Every row shares one model step,
        # so they take it too, restart from MuJoCo after it, and its outputs for them are dropped.
        resetting = self._needs_reset if mode == AutoresetMode.NEXT_STEP else np.zeros(self.num_envs, dtype=bool)
        out = self.batch.step(a.astype(np.float32))
        rows = np.flatnonzero(resetting)
        if len(rows):
            # A row started from a prompt starts its next episode from the same prompt.
            again = [None if self.batch.prompts[r] is None else {"prompt": self.batch.prompts[r]} for r in rows]
            self.batch.reset_rows(rows, [None] * len(rows), again, sample_seed=self._sample_seed())
        stepped = ~resetting
        n_clipped = np.where(stepped, n_clipped, 0)
        self._steps = np.where(stepped, self._steps + 1, 0)
        self._clipped_total = np.where(stepped, self._clipped_total + n_clipped, 0)
        reward, term = self._pick(out)
        terminated = term.astype(bool) & stepped
        truncated = (self._steps >= self.max_episode_steps) & ~terminated & stepped
        reward = np.where(stepped, reward, 0.0).astype(np.float64)
        info = self._step_info(out, n_clipped, stepped)
        done = terminated | truncated
        if mode == AutoresetMode.NEXT_STEP:
            self._needs_reset = done
        elif done.any():
            info = self._end_episodes(info, done)
        return self._obs_rows(), reward, terminated, truncated, info

    def _reset_info(self) -> dict[str, np.ndarray]:
        """A reset's info, as the single env's (`state`, `step`) gathered by Gymnasium's vector envs: every
        key with its mask `_key`, here True for every env."""
        every = np.ones(self.num_envs, dtype=bool)
        return {"state": self.batch.state.copy(), "_state": every, "step": self._steps.copy(), "_step": every.copy()}

    def _step_info(self, out: dict[str, np.ndarray], n_clipped: np.ndarray, stepped: np.ndarray) -> dict[str, Any]:
        """A step's info in Gymnasium's vector layout: the single env's keys, each with its mask `_key` of the
        envs that have it this step. Rows that only reset (`~stepped`) have the reset's keys alone; their
        other entries are zero. Every key is there even when no env has it (its mask all False), so a
        reader may index any key at any step."""
        info = self._reset_info()
        values = {"reward_model": out["reward_model"], "reward_task": out["reward_task"],
                  "terminated_model": out["terminated_model"], "terminated_task": out["terminated_task"],
                  "clipped": n_clipped, "clipped_total": self._clipped_total}
        for key, value in values.items():
            value = np.asarray(value, dtype=STEP_INFO_DTYPES[key])
            info[key] = np.where(stepped, value, np.zeros((), value.dtype))
            info[f"_{key}"] = stepped.copy()
        return info

    def _end_episodes(self, info: dict[str, Any], done: np.ndarray) -> dict[str, Any]:
        """Same-step autoreset of the rows in `done`, as Gymnasium's vector envs give it: their final
        observation and info go under `final_obs` and `final_info` (each key masked by `done`), and they
        restart. Their top-level info is then the reset's (`state`, `step`); their step keys are masked
        off, though the arrays still hold the final step's values there."""
        obs = self._obs_rows()
        final_obs = np.full(self.num_envs, None, dtype=object)
        for i in np.flatnonzero(done):
            final_obs[i] = obs_row(obs, int(i))
        final_info = {k: v.copy() for k, v in info.items() if not k.startswith("_")}
        final_info |= {f"_{k}": done.copy() for k in list(final_info)}
        rows = np.flatnonzero(done)
        again = [None if self.batch.prompts[r] is None else {"prompt": self.batch.prompts[r]} for r in rows]
        self.batch.reset_rows(rows, [None] * len(rows), again, sample_seed=self._sample_seed())
        self._steps[rows] = 0
        self._clipped_total[rows] = 0
        info = {**info, **self._reset_info()}
        info |= {f"_{k}": info[f"_{k}"] & ~done for k in STEP_INFO_DTYPES}
        return info | {"final_obs": final_obs, "_final_obs": done.copy(), "final_info": final_info,
                       "_final_info": done.copy()}

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        if self.batch.handle is None:
            raise gym.error.ResetNeeded("call reset() before render()")
        return tuple(self.batch.frames().copy())

    def close_extras(self, **kwargs):
        self.batch.close()
