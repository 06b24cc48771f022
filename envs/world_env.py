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
import torch
from gymnasium import spaces
from gymnasium.envs.registration import EnvSpec
from gymnasium.vector import AutoresetMode, VectorEnv

OBS_TYPES = ("pixels", "state", "latent", "dict")
REWARD_MODES = ("model", "task")
# The model computes in float32: a larger physics value becomes inf there.
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _describe(x: Any) -> str:
    """A short account of a refused value: its repr (cut) and, for arrays, dtype and shape."""
    text = repr(x)
    text = text if len(text) <= 80 else text[:77] + "..."
    if isinstance(x, np.ndarray):
        return f"{text} (dtype {x.dtype}, shape {x.shape})"
    return f"{text} ({type(x).__name__})"


def _real_array(x: Any, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """`x` as float64 of shape `shape`: ints or floats only (numpy arrays, lists, tuples, scalars).

    Bools, complex numbers, strings, bytes and objects are refused rather than coerced: numpy would
    turn `True` into 1.0, `"0.5"` into 0.5 and drop an imaginary part.

    Raises:
        ValueError: naming `name`, the expected shape and what came.
    """
    want = f"{name} must be real numbers (ints or floats) of shape {shape}"
    try:
        a = np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{want}, got {_describe(x)}: {exc}") from None
    if a.dtype.kind not in "iuf":
        raise ValueError(f"{want}, got {_describe(x)}")
    if not isinstance(x, np.ndarray) and a.size:  # a list mixing bools with numbers comes out float
        items = np.asarray(x, dtype=object).ravel()
        if any(isinstance(v, (bool, np.bool_)) for v in items):
            raise ValueError(f"{want}, got {_describe(x)}, which holds bools")
    if a.shape != shape:
        raise ValueError(f"{want}, got shape {a.shape}")
    return a.astype(np.float64)


def _make_time_limit(frame) -> int | None:
    """The `TimeLimit` that `gymnasium.make`, running in `frame`, puts on the env it is making; None when
    `frame` is not `make`'s or it puts none.

    `gym.make(id, max_episode_steps=n)` takes `n` for its own `TimeLimit(n)` and hands the env a spec
    with `max_episode_steps=None`, so `n` is visible only in `make`'s frame, the caller of the spec setter.
    """
    from gymnasium.envs.registration import make

    if frame is None or frame.f_code is not make.__code__:
        return None
    n = frame.f_locals.get("max_episode_steps")
    if n is None:  # make's own rule: its argument, else the spec's
        n = getattr(frame.f_locals.get("env_spec"), "max_episode_steps", None)
    ok = isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 1  # -1: make adds none
    return int(n) if ok else None


def load_world_model(scene: str, checkpoint: str | None, device: str | torch.device):
    """The world model for `scene`: `checkpoint` (a directory) or, when None, the one shipped for it.

    Raises:
        ValueError: when nothing is shipped for the scene, or the checkpoint was trained on another.
    """
    from worldsim.core.registry import SHIPPED
    from worldsim.model.world_model import WorldModel

    if checkpoint is None:
        shipped = SHIPPED.get("world_model", {})
        if scene not in shipped:
            raise ValueError(f"no world model is shipped for scene {scene!r} (shipped for: "
                             f"{', '.join(shipped) or 'none'}); pass checkpoint=DIR")
        checkpoint = scene
    wm = WorldModel.from_pretrained(checkpoint, device=device)
    if wm.cfg.scene != scene:
        raise ValueError(f"checkpoint {checkpoint!r} was trained on scene {wm.cfg.scene!r}, not {scene!r}")
    return wm


class WorldBatch:
    """N world-model rollouts stepped together; the engine behind `DSV4World` and `DSV4WorldVector`.

    Attributes:
        codes: [N, h, w] long, the current frame's tokens (on the model's device).
        state: [N, S] float64, the current (predicted) state, raw units.
    """

    def __init__(self, scene: str, num_envs: int, checkpoint: str | None = None, device: str = "auto",
                 context_frames: int = 1, temperature: float = 0.0, reward: str = "model"):
        from worldsim.core.runtime import resolve_device
        from worldsim.envs.registry import list_scenes, make_scene

        if scene not in list_scenes():
            raise ValueError(f"unknown scene {scene!r}; known scenes: {', '.join(list_scenes())}")
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs must be an int >= 1, got {num_envs!r}")
        if reward not in REWARD_MODES:
            raise ValueError(f"reward must be one of {REWARD_MODES}, got {reward!r}")
        if not (isinstance(temperature, (int, float)) and np.isfinite(temperature) and temperature >= 0):
            raise ValueError(f"temperature must be a finite number >= 0, got {temperature!r}")
        self.device = resolve_device(device)
        self.wm = load_world_model(scene, checkpoint, self.device)
        ctx = self.wm.cfg.dynamics.context
        if isinstance(context_frames, bool) or not isinstance(context_frames, (int, np.integer)) \
                or not 1 <= context_frames <= ctx:
            raise ValueError(f"context_frames must be an int in [1, {ctx}] (the model's context), "
                             f"got {context_frames!r}")
        self.scene_name, self.num_envs = scene, int(num_envs)
        self.context_frames, self.temperature, self.reward_mode = int(context_frames), float(temperature), reward
        self.real = make_scene(scene, width=self.wm.cfg.tokenizer.image_size, height=self.wm.cfg.tokenizer.image_size)
        # A second scene on which reset options are tried before any row is touched: checking them on
        # `real` would move its physics and RNG, and a refused reset must leave everything as it was.
        self._probe = None
        self.action_space = self.real.action_space
        self._null_action = np.clip(np.zeros(self.action_space.shape), self.action_space.low, self.action_space.high)
        self.handle = None
        g = self.wm.cfg.dynamics.grid
        self.codes = torch.zeros(self.num_envs, g, g, dtype=torch.long, device=self.device)
        self.state = np.zeros((self.num_envs, self.real.state_dim), dtype=np.float64)
        self._frames: np.ndarray | None = None  # decoded current frames, or None until asked for
        self._started = np.zeros(self.num_envs, dtype=bool)

    @property
    def dt(self) -> float:
        return self.real.dt

    def check_options(self, rows: np.ndarray, options: list[dict | None]) -> list[np.ndarray | None]:
        """The physics states (qpos then qvel) that reset options give rows `rows`; None where a row has
        none. Changes nothing: the options are tried on a scene of their own.

        Raises:
            ValueError: for unknown keys, only one of 'qpos' / 'qvel', values that are not real numbers
                of length nq / nv, not finite or beyond float32's range, or an initial state outside the
                model's state bounds (`wm.cfg.state_low` / `state_high`), the first row that has one named.
        """
        out: list[np.ndarray | None] = []
        m = self.real.model
        for row, opt in zip(np.asarray(rows, dtype=np.int64), options):
            where = f" (row {int(row)})" if self.num_envs > 1 else ""
            if opt is None or (isinstance(opt, dict) and not opt):
                out.append(None)
                continue
            if not isinstance(opt, dict):
                raise ValueError(f"reset options{where} must be a dict or None, got {_describe(opt)}")
            unknown = set(opt) - {"qpos", "qvel"}
            if unknown:
                raise ValueError(f"reset options{where} may hold 'qpos' and 'qvel', got {sorted(unknown)}")
            if ("qpos" in opt) != ("qvel" in opt):
                raise ValueError(f"reset options{where} must give both 'qpos' and 'qvel', or neither")
            parts = []
            for name, n, what in (("qpos", m.nq, "nq"), ("qvel", m.nv, "nv")):
                x = _real_array(opt[name], f"reset option {name!r}{where} ({what} = {n} of {self.scene_name})",
                                (n,))
                bad = np.flatnonzero(~np.isfinite(x))
                if len(bad):
                    raise ValueError(f"reset option {name!r}{where} must be finite, got {x[bad[0]]} at "
                                     f"index {int(bad[0])}")
                bad = np.flatnonzero(np.abs(x) > _FLOAT32_MAX)
                if len(bad):
                    raise ValueError(f"reset option {name!r}{where} must lie within float32's range "
                                     f"(|x| <= {_FLOAT32_MAX:.4g}), got {x[bad[0]]:.4g} at index {int(bad[0])}")
                parts.append(x)
            physics = np.concatenate(parts)
            self._check_initial_state(physics, where)
            out.append(physics)
        return out

    def _check_initial_state(self, physics: np.ndarray, where: str) -> None:
        """Refuse a physics state whose state vector (after MuJoCo's reset from it) is not finite in
        float32 or lies outside the model's state bounds: the model has never seen such a state."""
        from worldsim.envs.registry import make_scene

        if self._probe is None:
            self._probe = make_scene(self.scene_name, width=self.real.width, height=self.real.height)
        state, _ = self._probe.reset(seed=0, physics_state=physics)
        if not np.all(np.abs(state) <= _FLOAT32_MAX):  # NaN fails this too
            raise ValueError(f"reset options 'qpos' and 'qvel'{where} give an initial state that is not "
                             f"finite in float32: {state.tolist()}")
        cfg = self.wm.cfg
        if not cfg.state_low:
            return
        low, high = np.asarray(cfg.state_low), np.asarray(cfg.state_high)
        out = np.flatnonzero((state < low) | (state > high))
        if len(out):
            dims = "; ".join(f"state[{i}] = {state[i]:.4g} not in [{low[i]:.4g}, {high[i]:.4g}]" for i in out[:4])
            more = f" (and {len(out) - 4} more)" if len(out) > 4 else ""
            raise ValueError(f"reset options 'qpos' and 'qvel'{where} give an initial state outside the world "
                             f"model's state bounds (its training data's range widened by half on each side; "
                             f"it has never seen such a state): {dims}{more}")

    def reset_rows(self, rows: np.ndarray, seeds: list[int | None], options: list[dict | None],
                   sample_seed: int | None = None) -> None:
        """Restart rows `rows` from MuJoCo's initial states (seeded, or given as qpos/qvel).

        `sample_seed` seeds token sampling (temperature > 0) when this call restarts every row, which
        starts a fresh model handle; None: the first row seed. Restarting some rows keeps the handle's
        generator. Options are checked first (`check_options`): a refused reset changes nothing.
        """
        rows = np.asarray(rows, dtype=np.int64)
        if self.handle is None and len(rows) != self.num_envs:
            raise ValueError("the first reset must restart every environment")
        every = len(rows) == self.num_envs and np.array_equal(np.sort(rows), np.arange(self.num_envs))
        if sample_seed is None:
            sample_seed = next((s for s in seeds if s is not None), None)
        if every and sample_seed is None:
            # Without a seed, sampling would fall back to torch's global RNG: not reproducible.
            raise ValueError("restarting every row needs sample_seed (or a row seed) to seed token sampling")
        physics_states = self.check_options(rows, options)
        frames, states, actions = [], [], []
        for seed, physics in zip(seeds, physics_states):
            st, _ = self.real.reset(seed=seed, physics_state=physics)
            f, s, a = [self.real.render()], [st], []
            for _ in range(self.context_frames - 1):
                res = self.real.step(self._null_action)
                f.append(self.real.render()), s.append(res.state), a.append(self._null_action)
            frames.append(np.stack(f)), states.append(np.stack(s)), actions.append(a)
        dev = self.device
        tokens = self.wm.encode(torch.from_numpy(np.stack(frames)).to(dev))  # [R, C, h, w]
        st = torch.from_numpy(np.stack(states)).float()
        act = None
        if self.context_frames > 1:
            act = torch.from_numpy(np.asarray(actions, dtype=np.float32))
        if every:
            order = np.argsort(rows)
            self.handle = self.wm.start(tokens[order], st[order], None if act is None else act[order],
                                        seed=int(sample_seed))
        else:
            self.wm.restart_rows(self.handle, torch.from_numpy(rows), tokens, st, act)
        self.codes[torch.from_numpy(rows).to(dev)] = tokens[:, -1]
        self.state[rows] = np.stack(states)[:, -1]
        self._started[rows] = True
        self._frames = None

    def step(self, actions: np.ndarray) -> dict[str, np.ndarray]:
        """One model step for all rows under actions [N, A] (already checked and clipped)."""
        codes, state, reward, term = self.wm.step(self.handle, torch.from_numpy(actions).float(),
                                                  temperature=self.temperature)
        self.codes = codes
        self.state = state.double().cpu().numpy()
        self._frames = None
        out = {
            "reward_model": reward.double().cpu().numpy(),
            "terminated_model": term.cpu().numpy(),
            "reward_task": np.asarray(self.real.task_reward(self.state, actions), dtype=np.float64),
            "terminated_task": np.asarray(self.real.task_terminated(self.state), dtype=bool),
        }
        return out

    def frames(self) -> np.ndarray:
        """The current frames, decoded: uint8 [N, H, W, 3] (decoded once per step, on demand)."""
        if self._frames is None:
            self._frames = self.wm.decode(self.codes[:, None])[:, 0].cpu().numpy()
        return self._frames

    def close(self) -> None:
        self.real.close()
        if self._probe is not None:
            self._probe.close()


def _observation_spaces(batch: WorldBatch) -> dict[str, spaces.Space]:
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


def _check_actions(actions: Any, space: spaces.Box, batch_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Checked, clipped float actions and a per-row count of clipped components.

    Raises:
        ValueError: for anything but real numbers (ints or floats; not bools, complex numbers, strings
            or objects), a wrong shape or a NaN / inf component (the env is left as it was).
    """
    a = _real_array(actions, "action", batch_shape + space.shape)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"action must be finite, got {a.tolist()}")
    clipped = np.clip(a, space.low, space.high)
    n_clipped = (clipped != a).reshape(a.shape[: len(batch_shape)] + (-1,)).sum(-1)
    return clipped, n_clipped


class _Common:
    """Argument handling shared by the single and the vector env."""

    def _setup(self, scene: str, checkpoint: str | None, obs_type: str, render_mode: str | None, device: str,
               context_frames: int, temperature: float, reward: str, max_episode_steps: int | None,
               num_envs: int) -> None:
        _check_obs_type(obs_type)
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.batch = WorldBatch(scene, num_envs, checkpoint, device, context_frames, temperature, reward)
        if max_episode_steps is None:
            max_episode_steps = self.batch.real.max_episode_steps
        if isinstance(max_episode_steps, bool) or not isinstance(max_episode_steps, (int, np.integer)) \
                or max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be an int >= 1, got {max_episode_steps!r}")
        self.scene, self.obs_type, self.reward_mode = scene, obs_type, reward
        self.max_episode_steps = int(max_episode_steps)
        self.render_mode = render_mode
        self._spaces = _observation_spaces(self.batch)
        self._obs_space = (spaces.Dict(self._spaces) if obs_type == "dict" else self._spaces[obs_type])

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


def _row(obs: dict[str, np.ndarray] | np.ndarray, i: int):
    if isinstance(obs, dict):
        return {k: v[i] for k, v in obs.items()}
    return obs[i]


class DSV4World(_Common, gym.Env):
    """A Gymnasium env whose dynamics are a learned world model (the DeepSeek-V4-style transformer).

    ## Description
    The real scene (a Gymnasium MuJoCo task or a worldsim physics scene) is replaced by its learned
    model: each `step` is one batched, KV-cached latent rollout step of `worldsim.model.WorldModel`,
    which predicts the next frame's tokens, the next state, the reward and termination. MuJoCo is used
    only at `reset`, to render the true first frame.

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
    `reward="model"` (default): the model's own reward, from its outcome head on the predicted state
    when it has one (every shipped world does), else the transformer's reward head. `reward="task"`:
    the scene's own reward function applied to the predicted state and the action. Both are in
    `info` (`reward_model`, `reward_task`), with the predicted state (`info["state"]`).

    ## Starting State
    `reset(seed=s)` puts MuJoCo in the same initial physics state as the real scene's
    `reset(seed=s)`, renders it, and encodes the frame with the true state; `options={"qpos": ...,
    "qvel": ...}` starts from a given physics state instead: finite real numbers within float32's
    range, nq and nv of them, whose initial state lies inside the model's state bounds (when it has
    them); others raise `ValueError` and leave the env as it was. With `context_frames=C > 1`, MuJoCo
    also runs C - 1 steps under the zero action and the model starts from those C real steps.

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
    `reward="model" | "task"`, `max_episode_steps=None`.

    ## Version History
    - v0: first release.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 24}

    def __init__(self, scene: str = "Reacher-v5", checkpoint: str | None = None, obs_type: str = "state",
                 render_mode: str | None = None, device: str = "auto", context_frames: int = 1,
                 temperature: float = 0.0, reward: str = "model", max_episode_steps: int | None = None):
        self._spec = None
        self._own_max_episode_steps = max_episode_steps is not None
        self._setup(scene, checkpoint, obs_type, render_mode, device, context_frames, temperature, reward,
                    max_episode_steps, num_envs=1)
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
        return _row(self._obs_rows(), 0), info

    def step(self, action):
        if self.batch.handle is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        a, n_clipped = _check_actions(action, self.action_space, ())
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
        return _row(self._obs_rows(), 0), float(reward[0]), terminated, truncated, info

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        if self.batch.handle is None:
            raise gym.error.ResetNeeded("call reset() before render()")
        return self.batch.frames()[0].copy()

    def close(self):
        self.batch.close()


class DSV4WorldVector(_Common, VectorEnv):
    """N `DSV4World` environments stepped as one batch on one device (one model call per step).

    Same arguments as `DSV4World`, plus `num_envs` and `autoreset_mode` ("next_step", Gymnasium's
    default, or "same_step": the final observation is in `info["final_obs"]`). `reset(seed=s)` seeds
    env i with s + i, and `np_random` seeds token sampling at every reset and autoreset. Reset options
    are [N, nq] / [N, nv] arrays, checked as the single env's before any row restarts. Each env
    truncates itself after `max_episode_steps`.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 24, "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int = 1, scene: str = "Reacher-v5", checkpoint: str | None = None,
                 obs_type: str = "state", render_mode: str | None = None, device: str = "auto",
                 context_frames: int = 1, temperature: float = 0.0, reward: str = "model",
                 max_episode_steps: int | None = None, autoreset_mode: str | AutoresetMode = "next_step"):
        try:
            mode = AutoresetMode(autoreset_mode) if isinstance(autoreset_mode, AutoresetMode) else \
                {"next_step": AutoresetMode.NEXT_STEP, "same_step": AutoresetMode.SAME_STEP}[autoreset_mode]
        except KeyError:
            raise ValueError(f"autoreset_mode must be 'next_step' or 'same_step', got {autoreset_mode!r}") from None
        if mode == AutoresetMode.DISABLED:
            raise ValueError("autoreset_mode must be 'next_step' or 'same_step'")
        self._setup(scene, checkpoint, obs_type, render_mode, device, context_frames, temperature, reward,
                    max_episode_steps, num_envs=num_envs)
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
        return self._obs_rows(), {"state": self.batch.state.copy()}

    def _row_options(self, options: dict[str, Any] | None) -> list[dict | None]:
        """Per-row options from vector options ('qpos' [N, nq], 'qvel' [N, nv]); the batch checks each row."""
        if options is None or (isinstance(options, dict) and not options):
            return [None] * self.num_envs
        if not isinstance(options, dict):
            raise ValueError(f"reset options must be a dict or None, got {_describe(options)}")
        if set(options) - {"qpos", "qvel"}:
            raise ValueError(f"reset options may hold 'qpos' and 'qvel', got {sorted(options)}")
        if ("qpos" in options) != ("qvel" in options):
            raise ValueError("reset options must give both 'qpos' and 'qvel', or neither")
        m, n = self.batch.real.model, self.num_envs
        qpos = _real_array(options["qpos"], f"vector reset option 'qpos' ([num_envs, nq] = [{n}, {m.nq}])", (n, m.nq))
        qvel = _real_array(options["qvel"], f"vector reset option 'qvel' ([num_envs, nv] = [{n}, {m.nv}])", (n, m.nv))
        return [{"qpos": qpos[i], "qvel": qvel[i]} for i in range(n)]

    def step(self, actions):
        if self.batch.handle is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        a, n_clipped = _check_actions(actions, self.single_action_space, (self.num_envs,))
        mode = self.metadata["autoreset_mode"]
        if mode == AutoresetMode.NEXT_STEP and self._needs_reset.any():
            rows = np.flatnonzero(self._needs_reset)
            # The rows being reset take no model step this call, but every row shares one step: they
            # restart from MuJoCo after it and their outputs are replaced.
            out = self.batch.step(a.astype(np.float32))
            self.batch.reset_rows(rows, [None] * len(rows), [None] * len(rows), sample_seed=self._sample_seed())
        else:
            out = self.batch.step(a.astype(np.float32))
            rows = np.zeros(0, dtype=np.int64)
        self._steps += 1
        self._clipped_total += n_clipped
        reward, term = self._pick(out)
        terminated = term.astype(bool).copy()
        truncated = (self._steps >= self.max_episode_steps) & ~terminated
        reward = reward.astype(np.float64).copy()
        info = {
            "state": self.batch.state.copy(),
            "reward_model": out["reward_model"],
            "reward_task": out["reward_task"],
            "terminated_model": out["terminated_model"],
            "terminated_task": out["terminated_task"],
            "clipped": n_clipped,
            "clipped_total": self._clipped_total.copy(),
        }
        if len(rows):  # next-step autoreset: these rows only reset
            self._steps[rows] = 0
            self._clipped_total[rows] = 0
            reward[rows], terminated[rows], truncated[rows] = 0.0, False, False
            info["clipped"] = np.where(self._needs_reset, 0, n_clipped)
            info["clipped_total"] = self._clipped_total.copy()
        done = terminated | truncated
        if mode == AutoresetMode.NEXT_STEP:
            self._needs_reset = done
            obs = self._obs_rows()
        else:
            obs = self._obs_rows()
            if done.any():
                rows = np.flatnonzero(done)
                final_obs = np.full(self.num_envs, None, dtype=object)
                for i in rows:
                    final_obs[i] = _row(obs, int(i))
                info["final_obs"], info["_final_obs"] = final_obs, done.copy()
                final_info = {k: v.copy() for k, v in info.items() if k not in ("final_obs", "_final_obs")}
                info["final_info"] = {**final_info, **{f"_{k}": done.copy() for k in final_info}}
                info["_final_info"] = done.copy()
                self.batch.reset_rows(rows, [None] * len(rows), [None] * len(rows),
                                      sample_seed=self._sample_seed())
                self._steps[rows] = 0
                self._clipped_total[rows] = 0
                obs = self._obs_rows()
        return obs, reward, terminated, truncated, info

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        if self.batch.handle is None:
            raise gym.error.ResetNeeded("call reset() before render()")
        return tuple(self.batch.frames().copy())

    def close_extras(self, **kwargs):
        self.batch.close()
