"""Behaviour policies that generate training data: uniform random, smooth random, scripted.

Each policy is seeded per episode (`reset(scene, seed)`) and then called once a step
(`act(scene) -> action`), so an episode's actions depend only on its seed. The scripted controllers
read the scene's true physics (they are data generators, not agents) and are mixed with smooth noise
so the data covers both purposeful and random motion.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

import mujoco
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


def _reacher_controller(scene: Scene, _: dict) -> np.ndarray:
    """PD on joint angles to the inverse-kinematics solution that puts the fingertip on the target."""
    q, qd, target = scene.data.qpos[:2], scene.data.qvel[:2], scene.data.qpos[2:4]
    l1, l2 = 0.1, 0.11
    r2 = float(np.clip(target @ target, (l1 - l2) ** 2 + 1e-6, (l1 + l2) ** 2 - 1e-6))
    elbow = np.arccos(np.clip((r2 - l1**2 - l2**2) / (2 * l1 * l2), -1, 1))
    # Of the two elbow solutions, take the one nearer the current elbow angle.
    elbow = elbow if np.cos(q[1] - elbow) >= np.cos(q[1] + elbow) else -elbow
    shoulder = np.arctan2(target[1], target[0]) - np.arctan2(l2 * np.sin(elbow), l1 + l2 * np.cos(elbow))
    err = np.angle(np.exp(1j * (np.array([shoulder, elbow]) - q)))
    return 1.5 * err - 0.15 * qd


def _pendulum_gain(scene: Scene) -> np.ndarray:
    """LQR gain for the cart-pole, from MuJoCo's own finite-difference linearisation at upright."""
    m, d = scene.model, mujoco.MjData(scene.model)
    frame_skip = round(scene.dt / m.opt.timestep)

    def env_step(x: np.ndarray, u: np.ndarray) -> np.ndarray:
        d.qpos[:], d.qvel[:], d.ctrl[:] = x[: m.nq], x[m.nq :], u
        mujoco.mj_step(m, d, nstep=frame_skip)
        return np.concatenate([d.qpos, d.qvel])

    # Central differences over one whole env step (the model integrates with RK4, which
    # mjd_transitionFD does not support).
    nx, eps = m.nq + m.nv, 1e-5
    x0, u0 = np.zeros(nx), np.zeros(m.nu)
    Ad = np.stack([(env_step(x0 + eps * e, u0) - env_step(x0 - eps * e, u0)) / (2 * eps) for e in np.eye(nx)], 1)
    Bd = np.stack([(env_step(x0, u0 + eps * e) - env_step(x0, u0 - eps * e)) / (2 * eps) for e in np.eye(m.nu)], 1)
    Q, R = np.diag([1.0, 20.0, 1.0, 2.0]), np.eye(m.nu) * 0.05
    P = Q.copy()
    for _ in range(2000):  # discrete Riccati iteration
        K = np.linalg.solve(R + Bd.T @ P @ Bd, Bd.T @ P @ Ad)
        P = Q + Ad.T @ P @ (Ad - Bd @ K)
    return K


def _pendulum_controller(scene: Scene, cache: dict) -> np.ndarray:
    if "K" not in cache:
        cache["K"] = _pendulum_gain(scene)
    x = np.concatenate([scene.data.qpos, scene.data.qvel])
    # Drift the cart set-point slowly so balanced episodes still move along the rail.
    x[0] -= cache.setdefault("x_ref", 0.0)
    return -(cache["K"] @ x)


def _pusher_controller(scene: Scene, cache: dict) -> np.ndarray:
    """Reach behind the object (as seen from the goal), then push it through towards the goal."""
    d, m = scene.data, scene.model
    tip, obj, goal = d.body("tips_arm").xpos, d.body("object").xpos, d.body("goal").xpos
    u = goal[:2] - obj[:2]
    u = u / (np.linalg.norm(u) + 1e-9)
    behind = np.array([*(obj[:2] - 0.09 * u), obj[2]])
    if cache.get("phase", 0) == 0 and np.linalg.norm(tip - behind) < 0.05:
        cache["phase"] = 1
    target = behind if cache.get("phase", 0) == 0 else np.array([*(obj[:2] + 0.1 * u), obj[2]])
    jacp = np.zeros((3, m.nv))
    mujoco.mj_jacBody(m, d, jacp, None, m.body("tips_arm").id)
    torque = jacp[:, :7].T @ (8.0 * (target - tip)) - 0.5 * d.qvel[:7]
    return torque


def _bounce_controller(scene: Scene, _: dict) -> np.ndarray:
    """Push ball 0 towards the middle of the box."""
    return np.array([-1.5 * scene.data.qpos[0] - 0.5 * scene.data.qvel[0]])


CONTROLLERS: dict[str, Callable[[Scene, dict], np.ndarray]] = {
    "Reacher-v5": _reacher_controller,
    "InvertedPendulum-v5": _pendulum_controller,
    "Pusher-v5": _pusher_controller,
    "bounce": _bounce_controller,
}


# Noise (in units of the action range) that still lets the controller do its task most of the time:
# for the pendulum, 0.08 keeps most episodes balanced for 1000 steps, 0.2 drops them within ~100.
SCRIPTED_NOISE = {"InvertedPendulum-v5": 0.08}


class Scripted(SmoothRandom):
    """The scene's scripted controller plus smooth noise (`noise` in units of the action range;
    `None` takes the scene's default from `SCRIPTED_NOISE`, else 0.2)."""

    name = "scripted"

    def __init__(self, noise: float | None = None):
        super().__init__()
        self.noise_scale = noise

    def reset(self, scene: Scene, seed: int) -> None:
        if scene.name not in CONTROLLERS:
            raise ValueError(f"no scripted controller for scene {scene.name!r}; have {sorted(CONTROLLERS)}")
        super().reset(scene, seed)
        self.sigma = self.noise_scale if self.noise_scale is not None else SCRIPTED_NOISE.get(scene.name, 0.2)
        self.cache: dict = {"x_ref": float(self.rng.uniform(-0.5, 0.5))}

    def act(self, scene: Scene) -> np.ndarray:
        a = CONTROLLERS[scene.name](scene, self.cache)
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
