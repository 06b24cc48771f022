"""`WorldBatch`: N world-model rollouts stepped together, the engine behind `DSV4World` and
`DSV4WorldVector`, and `load_world_model`, which finds the model for a scene.

A reset asks MuJoCo for the real initial frame and state (the same physics state as the real
scene's `reset(seed=s)`), encodes the frame, and restarts only the rows being reset; a step is one
KV-cached model step for all rows. Frames are decoded only when asked for. A batch made with
`frames=False` rolls out without frames: each step carries its action and state tokens alone (state
observations at a fraction of a framed step's cost), and there are no codes or frames to give.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch

from worldsim.core.precision import resolve_precision
from worldsim.core.registry import SHIPPED
from worldsim.core.runtime import resolve_device
from worldsim.envs.captions import start_guides
from worldsim.envs.registry import list_scenes, make_scene
from worldsim.envs.threads import ThreadScope, pick_threads
from worldsim.model.generation import check_prompt, start_from_prompt
from worldsim.model.world_model import WorldModel

REWARD_MODES = ("model", "task")
# The model computes in float32: a larger physics value becomes inf there.
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def describe_value(x: Any) -> str:
    """A short account of a refused value: its repr (cut) and, for arrays, dtype and shape."""
    text = repr(x)
    text = text if len(text) <= 80 else text[:77] + "..."
    if isinstance(x, np.ndarray):
        return f"{text} (dtype {x.dtype}, shape {x.shape})"
    return f"{text} ({type(x).__name__})"


def real_array(x: Any, name: str, shape: tuple[int, ...]) -> np.ndarray:
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
        raise ValueError(f"{want}, got {describe_value(x)}: {exc}") from None
    if a.dtype.kind not in "iuf":
        raise ValueError(f"{want}, got {describe_value(x)}")
    if not isinstance(x, np.ndarray) and a.size:  # a list mixing bools with numbers comes out float
        items = np.asarray(x, dtype=object).ravel()
        if any(isinstance(v, (bool, np.bool_)) for v in items):
            raise ValueError(f"{want}, got {describe_value(x)}, which holds bools")
    if a.shape != shape:
        raise ValueError(f"{want}, got shape {a.shape}")
    return a.astype(np.float64)


class NoShippedWorld(ValueError):
    """No world model is shipped for a scene and no checkpoint was given. The message says how to give
    one in Python (`checkpoint=DIR`); `advice("--checkpoint DIR")` says it for the command line."""

    def __init__(self, scene: str, shipped: list[str]):
        self.scene, self.shipped = scene, list(shipped)
        super().__init__(self.advice("checkpoint=DIR"))

    def advice(self, how: str) -> str:
        return (f"no world model is shipped for scene {self.scene!r} (shipped for: "
                f"{', '.join(self.shipped) or 'none'}); pass a world-model checkpoint directory ({how})")


def load_world_model(scene: str, checkpoint: str | None = None, device: str | torch.device = "auto"):
    """The world model for `scene`: `checkpoint` (a directory) or, when None, the one shipped for it.

    Raises:
        NoShippedWorld: a `ValueError`, when no checkpoint is given and nothing is shipped for the scene.
        ValueError: when the checkpoint was trained on another scene.
    """
    if checkpoint is None:
        shipped = SHIPPED.get("world_model", {})
        if scene not in shipped:
            raise NoShippedWorld(scene, list(shipped))
        checkpoint = scene
    wm = WorldModel.from_pretrained(checkpoint, device=device)
    if wm.cfg.scene != scene:
        raise ValueError(f"checkpoint {checkpoint!r} was trained on scene {wm.cfg.scene!r}, not {scene!r}")
    return wm


def _on_own_threads(method):
    """Run a `WorldBatch` method on the batch's own thread count (`envs.threads`)."""
    @functools.wraps(method)
    def run(self, *args, **kwargs):
        with self.threads:
            return method(self, *args, **kwargs)
    return run


class WorldBatch:
    """N world-model rollouts stepped together; the engine behind `DSV4World` and `DSV4WorldVector`.

    Its torch work runs on `num_threads` threads (None: one for up to `envs.threads.SMALL_BATCH`
    rows on a CPU, else the caller's setting; always one in a forked process), restoring the
    caller's setting after each call.

    Attributes:
        codes: [N, h, w] long, the current frame's tokens (on the model's device); None without frames.
        state: [N, S] float64, the current (predicted) state, raw units.
    """

    def __init__(self, scene: str, num_envs: int, checkpoint: str | None = None, device: str = "auto",
                 context_frames: int = 1, temperature: float = 0.0, reward: str = "model", frames: bool = True,
                 num_threads: int | None = None, precision: str = "auto"):
        if scene not in list_scenes():
            raise ValueError(f"unknown scene {scene!r}; known scenes: {', '.join(list_scenes())}")
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs must be an int >= 1, got {num_envs!r}")
        if reward not in REWARD_MODES:
            raise ValueError(f"reward must be one of {REWARD_MODES}, got {reward!r}")
        if not (isinstance(temperature, (int, float)) and np.isfinite(temperature) and temperature >= 0):
            raise ValueError(f"temperature must be a finite number >= 0, got {temperature!r}")
        self.device = resolve_device(device)
        self.threads = ThreadScope(pick_threads(num_threads, int(num_envs), self.device))
        resolve_precision(precision, self.device)  # a bad name is refused before the model loads
        with self.threads:
            self.wm = load_world_model(scene, checkpoint, self.device).set_precision(precision)
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
        self.codes = torch.zeros(self.num_envs, g, g, dtype=torch.long, device=self.device) if frames else None
        self.state = np.zeros((self.num_envs, self.real.state_dim), dtype=np.float64)
        self._frames: np.ndarray | None = None  # decoded current frames, or None until asked for
        self._started = np.zeros(self.num_envs, dtype=bool)
        # Each row's prompt at its last reset (None: a MuJoCo start); a vector env's autoreset reuses it.
        self.prompts = np.full(self.num_envs, None, dtype=object)

    @property
    def with_frames(self) -> bool:
        """Whether the rollouts carry frames (`frames=True`); without them there are no codes."""
        return self.codes is not None

    @property
    def dt(self) -> float:
        return self.real.dt

    def check_options(self, rows: np.ndarray, options: list[dict | None]) -> list[np.ndarray | str | None]:
        """What reset options give rows `rows`: the physics state (qpos then qvel), the prompt (a str), or
        None where a row has neither. Changes nothing: the options are tried on a scene of their own.

        Raises:
            ValueError: for unknown keys, a prompt beside 'qpos' / 'qvel', a prompt the scene cannot read
                or make (`worldsim.model.prompt_language.PromptError`), a prompt to a world without a
                prompt prefix or with context_frames > 1, only one of 'qpos' / 'qvel', values that are
                not real numbers of length nq / nv, not finite or beyond float32's range, or an initial
                state outside the model's state bounds (`wm.cfg.state_low` / `state_high`), the first
                row that has one named.
        """
        out: list[np.ndarray | str | None] = []
        m = self.real.model
        for row, opt in zip(np.asarray(rows, dtype=np.int64), options):
            where = f" (row {int(row)})" if self.num_envs > 1 else ""
            if opt is None or (isinstance(opt, dict) and not opt):
                out.append(None)
                continue
            if not isinstance(opt, dict):
                raise ValueError(f"reset options{where} must be a dict or None, got {describe_value(opt)}")
            unknown = set(opt) - {"qpos", "qvel", "prompt"}
            if unknown:
                raise ValueError(f"reset options{where} may hold 'prompt', or 'qpos' and 'qvel', got {sorted(unknown)}")
            if "prompt" in opt:
                out.append(self._check_prompt(opt, where))
                continue
            if ("qpos" in opt) != ("qvel" in opt):
                raise ValueError(f"reset options{where} must give both 'qpos' and 'qvel', or neither")
            parts = []
            for name, n, what in (("qpos", m.nq, "nq"), ("qvel", m.nv, "nv")):
                x = real_array(opt[name], f"reset option {name!r}{where} ({what} = {n} of {self.scene_name})",
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

    def _check_prompt(self, opt: dict, where: str) -> str:
        if set(opt) != {"prompt"}:
            raise ValueError(f"reset options{where}: a prompt sets the whole start; give 'prompt' alone, not with "
                             f"{sorted(set(opt) - {'prompt'})}")
        if self.context_frames != 1:
            raise ValueError(f"reset options{where}: a prompt starts a world from one generated step; make the env "
                             f"with context_frames=1 (it has {self.context_frames})")
        prompt = opt["prompt"]
        if not isinstance(prompt, str):
            raise ValueError(f"reset option 'prompt'{where} must be a str, got {describe_value(prompt)}")
        check_prompt(self.wm, prompt)
        return prompt

    def _check_initial_state(self, physics: np.ndarray, where: str) -> None:
        """Refuse a physics state whose state vector (after MuJoCo's reset from it) is not finite in
        float32 or lies outside the model's state bounds: the model has never seen such a state."""
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

    @_on_own_threads
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
        starts = self.check_options(rows, options)
        frames, states, actions, prompted = [], [], [], []
        for i, (seed, start) in enumerate(zip(seeds, starts)):
            if isinstance(start, str):  # the model samples the start below
                prompted.append(i)
                frames.append(None), states.append(None), actions.append([])
                continue
            st, _ = self.real.reset(seed=seed, physics_state=start)
            f, s, a = [self.real.render()] if self.with_frames else [], [st], []
            for _ in range(self.context_frames - 1):
                res = self.real.step(self._null_action)
                s.append(res.state), a.append(self._null_action)
                if self.with_frames:
                    f.append(self.real.render())
            frames.append(f), states.append(np.stack(s)), actions.append(a)
        dev = self.device
        tokens = None
        real_rows = [i for i in range(len(rows)) if i not in prompted]
        if self.with_frames:
            g = self.wm.cfg.dynamics.grid
            tokens = torch.zeros(len(rows), self.context_frames, g, g, dtype=torch.long, device=dev)  # [R, C, h, w]
            if real_rows:
                tokens[real_rows] = self.wm.encode(torch.from_numpy(np.stack([np.stack(frames[i])
                                                                              for i in real_rows])).to(dev))
        self._start_prompted(prompted, starts, seeds, sample_seed, states, tokens)
        self.prompts[rows] = [p if isinstance(p, str) else None for p in starts]
        st = torch.from_numpy(np.stack(states)).float()
        act = None
        if self.context_frames > 1:
            act = torch.from_numpy(np.asarray(actions, dtype=np.float32))
        if every:
            order = np.argsort(rows)
            self.handle = self.wm.start(None if tokens is None else tokens[order], st[order],
                                        None if act is None else act[order], seed=int(sample_seed))
        else:
            self.wm.restart_rows(self.handle, torch.from_numpy(rows), tokens, st, act)
        if tokens is not None:
            self.codes[torch.from_numpy(rows).to(dev)] = tokens[:, -1]
        self.state[rows] = np.stack(states)[:, -1]
        self._started[rows] = True
        self._frames = None

    def _start_prompted(self, prompted: list[int], starts: list, seeds: list[int | None], sample_seed: int | None,
                        states: list, tokens: torch.Tensor | None) -> None:
        """Fill the rows `prompted` (positions in this reset) of `states` and `tokens` with the starts their
        prompts describe: sampled from the row's seed, or, for rows without one, in turn from one
        generator seeded by `sample_seed`."""
        shared = None
        for i in prompted:
            if seeds[i] is not None:
                gen = torch.Generator(device=self.device).manual_seed(int(seeds[i]))
            else:
                if shared is None and sample_seed is not None:
                    shared = torch.Generator(device=self.device).manual_seed(int(sample_seed))
                gen = shared
            # The agent's actions are not known yet: a start is chosen by its rollout under zero actions.
            st0, codes0 = start_from_prompt(self.wm, [starts[i]], gen, frames=self.with_frames,
                                            **start_guides(self.real))
            states[i] = st0.double().cpu().numpy()
            if tokens is not None:
                tokens[i, 0] = codes0[0]

    @_on_own_threads
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

    @_on_own_threads
    def frames(self) -> np.ndarray:
        """The current frames, decoded: uint8 [N, H, W, 3] (decoded once per step, on demand)."""
        if not self.with_frames:
            raise ValueError("this world batch rolls out without frames (frames=False): it has no frames to give")
        if self._frames is None:
            self._frames = self.wm.decode(self.codes[:, None])[:, 0].cpu().numpy()
        return self._frames

    def close(self) -> None:
        self.real.close()
        if self._probe is not None:
            self._probe.close()
