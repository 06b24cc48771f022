"""Behaviour policies that generate training data: uniform random, smooth random, scripted.

Each policy is seeded per episode (`reset(scene, seed)`) and then called once a step
(`act(scene) -> action`), so an episode's actions depend only on its seed. The scripted controllers
(each scene's `Scene.scripted_action`) read the scene's true physics (they are data generators, not
agents) and are mixed with smooth noise so the data covers both purposeful and random motion.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

import numpy as np

from worldsim.envs.scene import Scene


class Policy(abc.ABC):
    name: str

    def reset(self, scene: Scene, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.low = scene.action_space.low.astype(np.float64)
        self.high = scene.action_space.high.astype(np.float64)

    @abc.abstractmethod
    def act(self, scene: Scene) -> np.ndarray: ...

    def _clip(self, a: np.ndarray) -> np.ndarray:
        return np.clip(a, self.low, self.high)


class UniformRandom(Policy):
    """Independent uniform actions over the whole action box."""

    name = "random"

    def act(self, scene: Scene) -> np.ndarray:
        return self.rng.uniform(self.low, self.high)


class SmoothRandom(Policy):
    """Ornstein-Uhlenbeck noise in units of the action range: temporally correlated random motion."""

    name = "smooth"

    def __init__(self, theta: float = 0.15, sigma: float = 0.35):
        self.theta, self.sigma = theta, sigma

    def reset(self, scene: Scene, seed: int) -> None:
        super().reset(scene, seed)
        self.x = self.rng.uniform(-0.5, 0.5, size=self.low.shape)

    def noise(self) -> np.ndarray:
        self.x = self.x - self.theta * self.x + self.sigma * self.rng.standard_normal(self.x.shape)
        return self.x

    def act(self, scene: Scene) -> np.ndarray:
        mid, half = (self.high + self.low) / 2, (self.high - self.low) / 2
        return self._clip(mid + half * self.noise())


class Scripted(SmoothRandom):
    """The scene's scripted controller (`Scene.scripted_action`) plus smooth noise (`noise` in units
    of the action range; `None` takes the scene's own `scripted_noise`)."""

    name = "scripted"

    def __init__(self, noise: float | None = None):
        super().__init__()
        self.noise_scale = noise

    def reset(self, scene: Scene, seed: int) -> None:
        super().reset(scene, seed)
        self.sigma = self.noise_scale if self.noise_scale is not None else scene.scripted_noise
        self.cache: dict = {"x_ref": float(self.rng.uniform(-0.5, 0.5))}

    def act(self, scene: Scene) -> np.ndarray:
        a = scene.scripted_action(self.cache)
        half = (self.high - self.low) / 2
        return self._clip(a + half * self.noise())


class Mixed(Policy):
    """Each episode draws one of random / smooth / scripted (weights 0.2 / 0.3 / 0.5)."""

    name = "mixed"

    def __init__(self):
        self.choices = [UniformRandom(), SmoothRandom(), Scripted()]
        self.weights = [0.2, 0.3, 0.5]

    def reset(self, scene: Scene, seed: int) -> None:
        super().reset(scene, seed)
        self.current = self.choices[self.rng.choice(len(self.choices), p=self.weights)]
        self.current.reset(scene, int(self.rng.integers(2**62)))

    def act(self, scene: Scene) -> np.ndarray:
        return self.current.act(scene)


POLICIES: dict[str, Callable[[], Policy]] = {
    "random": UniformRandom,
    "smooth": SmoothRandom,
    "scripted": Scripted,
    "mixed": Mixed,
}


def make_policy(name: str) -> Policy:
    """Build a behaviour policy by name: one of `POLICIES`."""
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}; known policies: {', '.join(POLICIES)}")
    return POLICIES[name]()
