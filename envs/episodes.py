"""What a dataset generation run makes: its spec, the seeds of each episode, and one episode's arrays.

Episode `e` of a dataset with seed `K` depends only on `(K, e)`: its reset seed and its policy seed
come from `numpy.random.SeedSequence(K, spawn_key=(e,))`. The evaluation replays episodes the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class GenerateSpec:
    """What to generate. `episodes` may grow on a rerun; everything else must stay the same."""

    scene: str
    out: str
    episodes: int
    policy: str = "mixed"
    seed: int = 0
    workers: int = 1
    shard_size: int = 16
    width: int = 64
    height: int = 64
    max_steps: int | None = None
    scene_options: tuple[tuple[str, Any], ...] = ()
    frames: bool = True

    def __post_init__(self) -> None:
        for name in ("episodes", "workers", "shard_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {self.seed!r}")
        if self.max_steps is not None and (not isinstance(self.max_steps, int) or self.max_steps < 1):
            raise ValueError(f"max_steps must be an int >= 1 or None, got {self.max_steps!r}")


def episode_seeds(seed: int, episode: int) -> tuple[int, int]:
    """(scene reset seed, policy seed) of episode `episode` in a dataset made with `seed`."""
    s = np.random.SeedSequence(seed, spawn_key=(episode,)).generate_state(2, np.uint32)
    return int(s[0]), int(s[1])


def run_episode(scene, policy, seed: int, episode: int, max_steps: int, render: bool = True) -> dict[str, np.ndarray]:
    """Roll out one seeded episode and return its arrays (see the module docstring); without
    `render`, every array but the frames (the physics, and so the states, are the same)."""
    reset_seed, policy_seed = episode_seeds(seed, episode)
    state, info = scene.reset(seed=reset_seed)
    policy.reset(scene, policy_seed)
    frames, states, physics, contacts, energy = [scene.render()] if render else [], [state], \
        [info["physics_state"]], [info["contacts"]], [info["energy"]]
    actions, rewards, terms, truncs = [], [], [], []
    for t in range(max_steps):
        action = np.asarray(policy.act(scene), dtype=np.float32)
        r = scene.step(action)
        if render:
            frames.append(scene.render())
        states.append(r.state)
        physics.append(r.info["physics_state"])
        contacts.append(r.info["contacts"])
        energy.append(r.info["energy"])
        actions.append(action)
        rewards.append(r.reward)
        terms.append(r.terminated)
        truncs.append(not r.terminated and t == max_steps - 1)
        if r.terminated:
            break
    out = {"frames": np.stack(frames).astype(np.uint8)} if render else {}
    return out | {
        "states": np.stack(states).astype(np.float64),
        "physics": np.stack(physics).astype(np.float64),
        "contacts": np.stack(contacts).astype(bool),
        "energy": np.asarray(energy, dtype=np.float64),
        "actions": np.stack(actions).astype(np.float32),
        "rewards": np.asarray(rewards, dtype=np.float32),
        "terminated": np.asarray(terms, dtype=bool),
        "truncated": np.asarray(truncs, dtype=bool),
    }
