"""Closed-loop policy evaluation: each policy runs in MuJoCo and in the world from the same seeds, and
the world is scored on how it ranks and scores the policies as MuJoCo does (`worldsim.eval.ranking`).

    from worldsim.eval.policy_eval import BehaviourPolicy, evaluate_policies
    report = evaluate_policies("Reacher-v5", {"zero": lambda obs: np.zeros((len(obs), 2)),
                                              "random": BehaviourPolicy("random", seed=0)},
                               episodes=8, seed=1000)

A policy is any callable from a batch of state observations [E, obs_dim] to actions [E, act_dim]:
it acts on what it sees (the real scene's state in MuJoCo, the predicted state in the world), so
episodes that start from the same physics state diverge as the world's predictions do. Episode i
starts from seed `seed + i` in both (the world's `reset(seed=s)` is MuJoCo's `reset(seed=s)`) and
runs to its termination or `max_steps` (the scene's episode length by default). Returns are the
task's own reward summed in MuJoCo and the world's own (model) reward in the world.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np
from gymnasium import spaces

from worldsim.envs import make_scene
from worldsim.envs.policies import SmoothRandom, make_policy
from worldsim.envs.world_env import DSV4WorldVector
from worldsim.eval.agents import SB3_ALGOS, load_agent, sb3_policy
from worldsim.eval.ranking import ranking_report

Policy = Callable[[np.ndarray], np.ndarray]


class _SeededRows:
    """A policy holding one seeded data-generator policy per episode row, episode i seeded with
    `seed + i`; `reset(action_space)` reseeds them, so MuJoCo and the world see the same noise while
    their episodes last."""

    def __init__(self, name: str, seed: int):
        self.name, self.seed = name, seed
        self.space, self.rows = None, []

    def reset(self, action_space: spaces.Box) -> None:
        self.space, self.rows = action_space, []

    def _new_row(self):
        return make_policy(self.name)

    def _seeded_rows(self, n: int) -> list:
        if self.space is None:
            raise ValueError(f"{type(self).__name__}.reset(action_space) must come before the first action")
        if len(self.rows) != n:
            # The base policies read only the action box from the scene they are reset with.
            box = SimpleNamespace(action_space=self.space)
            self.rows = [self._new_row() for _ in range(n)]
            for i, p in enumerate(self.rows):
                p.reset(box, self.seed + i)
        return self.rows


class BehaviourPolicy(_SeededRows):
    """The data generators' observation-blind behaviour policies (`worldsim.envs.policies`: "random",
    uniform over the action box, or "smooth", Ornstein-Uhlenbeck noise in units of its range), one per
    episode (`_SeededRows`).

    Raises:
        ValueError: for another name.
    """

    def __init__(self, name: str, seed: int = 0):
        if name not in ("random", "smooth"):
            raise ValueError(f"a behaviour policy is 'random' or 'smooth', got {name!r}")
        super().__init__(name, seed)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return np.stack([p.act(None) for p in self._seeded_rows(len(obs))])


class ScriptedPolicy(_SeededRows):
    """The scene's scripted controller acting on the observed state (`Scene.observed_action`: the
    world's predicted state in the world, MuJoCo's in MuJoCo), plus the data generator's smooth noise
    at `noise` (in units of the action range; 0: none), one noise process per episode (`_SeededRows`).

    Raises:
        ValueError: for a noise that is not a finite number >= 0.
    """

    def __init__(self, scene: str, noise: float = 0.0, seed: int = 0):
        if not (math.isfinite(noise) and noise >= 0):
            raise ValueError(f"scripted noise must be a finite number >= 0, got {noise}")
        super().__init__("scripted", seed)
        self.scene, self.noise = make_scene(scene), float(noise)

    def _new_row(self):
        row = SmoothRandom(sigma=self.noise)
        row.cache = {}  # the controller's state over the episode
        return row

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        rows = self._seeded_rows(len(obs))
        half = (self.space.high - self.space.low) / 2
        return np.stack([self.scene.observed_action(o, row.cache) + (half * row.noise() if self.noise > 0 else 0.0)
                         for o, row in zip(obs, rows)])


class ConstantPolicy:
    """The same action every step: `value` in each action component (0: no actuation)."""

    def __init__(self, value: float = 0.0):
        self.value, self.dim = float(value), 1

    def reset(self, action_space: spaces.Box) -> None:
        self.dim = action_space.shape[0]

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return np.full((len(obs), self.dim), self.value)


BUILT_IN = ("zero, const:V (every component V), random[:SEED], smooth[:SEED], scripted[:NOISE] (the scene's "
            "controller on the observed state plus smooth noise, in units of the action range), or "
            "ALGO:AGENT.zip for a saved Stable-Baselines3 agent (ALGO: ppo, sac, td3, a2c), acting "
            "deterministically, or agent:AGENT.zip for one saved with its settings.json (examples/train_in_world.py)")


def policy_from_spec(spec: str, scene: str | None = None) -> Policy:
    """A policy from its command-line name (`BUILT_IN`); "scripted" needs the `scene`.

    Raises:
        ValueError: for an unknown name or a bad parameter.
    """
    name, _, param = spec.partition(":")
    if name == "scripted":
        if scene is None:
            raise ValueError("the scripted policy needs the scene it controls")
        return ScriptedPolicy(scene, noise=_number(spec, param) if param else 0.0)
    try:
        if name == "zero" and not param:
            return ConstantPolicy(0.0)
        if name == "const" and param:
            return ConstantPolicy(float(param))
        if name in ("random", "smooth"):
            return BehaviourPolicy(name, seed=int(param) if param else 0)
    except ValueError:
        pass
    if name in SB3_ALGOS and param:
        return sb3_policy(name, param, scene)
    if name == "agent" and param:
        return load_agent(param, scene=scene)
    raise ValueError(f"unknown policy {spec!r}; built-in policies: {BUILT_IN}")


def _number(spec: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"unknown policy {spec!r}; built-in policies: {BUILT_IN}") from None


def _prepare(policy: Policy, action_space: spaces.Box) -> None:
    """Reseed a policy that can be (the built-in ones, or anything with `reset(action_space)`)."""
    reset = getattr(policy, "reset", None)
    if callable(reset):
        reset(action_space)


def _checked_actions(policy: Policy, obs: np.ndarray, space) -> np.ndarray:
    a = np.asarray(policy(obs), dtype=np.float64)
    want = (len(obs),) + space.shape
    if a.shape != want or not np.all(np.isfinite(a)):
        raise ValueError(f"a policy must map observations [{len(obs)}, obs_dim] to finite actions {list(want)}, "
                         f"got shape {a.shape}")
    return np.clip(a, space.low, space.high)


def run_real(scene_name: str, policy: Policy, seeds: list[int], max_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Returns [E] and episode lengths [E] of `policy` in MuJoCo, the episodes in lockstep."""
    scenes = [make_scene(scene_name) for _ in seeds]
    try:
        obs = np.stack([s.reset(seed=int(seed))[0] for s, seed in zip(scenes, seeds)])
        _prepare(policy, scenes[0].action_space)
        returns, lengths = np.zeros(len(seeds)), np.zeros(len(seeds), dtype=np.int64)
        alive = np.ones(len(seeds), dtype=bool)
        for _ in range(max_steps):
            actions = _checked_actions(policy, obs, scenes[0].action_space)
            for i in np.flatnonzero(alive):
                res = scenes[i].step(actions[i])
                obs[i] = res.state
                returns[i] += res.reward
                lengths[i] += 1
                alive[i] = not res.terminated
            if not alive.any():
                break
        return returns, lengths
    finally:
        for s in scenes:
            s.close()


def run_world(scene_name: str, policy: Policy, seeds: list[int], max_steps: int, checkpoint: str | None = None,
              device: str = "auto", reward: str = "model") -> tuple[np.ndarray, np.ndarray]:
    """Returns [E] and episode lengths [E] of `policy` in the world (state observations; the model's own
    reward and termination, or with `reward="task"` the task's on the predicted states)."""
    env = DSV4WorldVector(num_envs=len(seeds), scene=scene_name, checkpoint=checkpoint, obs_type="state",
                          device=device, max_episode_steps=max_steps, reward=reward)
    try:
        obs, _ = env.reset(seed=[int(s) for s in seeds])
        _prepare(policy, env.single_action_space)
        returns, lengths = np.zeros(len(seeds)), np.zeros(len(seeds), dtype=np.int64)
        alive = np.ones(len(seeds), dtype=bool)
        for _ in range(max_steps):
            actions = _checked_actions(policy, np.asarray(obs, dtype=np.float64), env.single_action_space)
            obs, reward, terminated, truncated, _ = env.step(actions)
            returns[alive] += reward[alive]
            lengths[alive] += 1
            alive &= ~(terminated | truncated)
            if not alive.any():
                break
        return returns, lengths
    finally:
        env.close()


def episode_steps(scene: str) -> int:
    """The scene's episode length (its time limit)."""
    probe = make_scene(scene)
    try:
        return probe.max_episode_steps
    finally:
        probe.close()


def _stats(x: np.ndarray) -> dict[str, float]:
    return {"mean": float(x.mean()), "std": float(x.std())}


def evaluate_policies(scene: str, policies: dict[str, Policy], episodes: int = 16, seed: int = 1000,
                      max_steps: int | None = None, checkpoint: str | None = None,
                      device: str = "auto") -> dict[str, Any]:
    """Run every policy closed loop in MuJoCo and in the world; per-policy returns and lengths, and the
    world's ranking figures over the policies (with at least two).

    Raises:
        ValueError: for fewer than one episode, no policies, or a policy giving actions of the wrong shape.
    """
    if episodes < 1 or not policies:
        raise ValueError(f"need episodes >= 1 and at least one policy, got {episodes} and {len(policies)}")
    steps = episode_steps(scene) if max_steps is None else max_steps
    seeds = [seed + i for i in range(episodes)]
    rows = {}
    for name, policy in policies.items():
        real, real_len = run_real(scene, policy, seeds, steps)
        world, world_len = run_world(scene, policy, seeds, steps, checkpoint, device)
        rows[name] = {"real_return": _stats(real), "world_return": _stats(world),
                      "real_length": _stats(real_len.astype(float)), "world_length": _stats(world_len.astype(float))}
    report: dict[str, Any] = {"scene": scene, "episodes": episodes, "seed": seed, "max_steps": steps,
                              "checkpoint": checkpoint, "policies": rows}
    if len(rows) >= 2:
        report["ranking"] = ranking_report([r["real_return"]["mean"] for r in rows.values()],
                                           [r["world_return"]["mean"] for r in rows.values()])
    return report
