"""The Scene contract: a named MuJoCo world that gives ground truth to learn from and to judge by.

A scene steps physics, renders a frame from a fixed camera, and reports the state vector, the full
physics state (qpos, qvel), named body positions, contact events, energy, and its task reward and
termination as pure functions of the state (so they can be applied to predicted states too).
"""

from __future__ import annotations

import abc
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np

from worldsim.envs.rendering import CameraSpec, FrameRenderer, check_frame_size


@dataclass
class StepResult:
    """What `Scene.step` returns. `state` is the state after the step; `reward` and `terminated`
    are the task's own, equal to `Scene.task_reward` / `Scene.task_terminated` on that state."""

    state: np.ndarray
    reward: float
    terminated: bool
    info: dict[str, Any] = field(default_factory=dict)


class Scene(abc.ABC):
    """Base class of all scenes. Subclasses own a `mujoco.MjModel`/`MjData` pair.

    Attributes:
        name: the registry name.
        description: one line on what the scene is, for `worldsim scenes`.
        dt: seconds per step (video fps = 1 / dt).
        max_episode_steps: the scene's own episode length.
        action_space: a `gymnasium.spaces.Box`.
        state_dim: length of the state vector.
        energy_conserved: whether total energy is conserved between contacts with zero action.
        contact_pairs: the (body, body) name pairs that `contacts()` reports on, in order.
        has_balls: whether the scene is balls in a box, whose contacts, energy, walls and ball counts
            the evaluation scores (`worldsim.eval.physics`).
        scripted_noise: the smooth noise (in units of the action range) mixed into the scripted
            controller by the `scripted` policy: as much as still lets the controller do its task.
    """

    name: str
    description: str
    dt: float
    max_episode_steps: int
    action_space: gym.spaces.Box
    energy_conserved: bool = False
    has_balls: bool = False
    scripted_noise: float = 0.2

    def __init__(self, model: mujoco.MjModel, data: mujoco.MjData, width: int, height: int, camera: CameraSpec):
        check_frame_size(width, height)
        self.model, self.data = model, data
        self.width, self.height = width, height
        # Energy is computed by mj_forward only when this flag is on.
        self.model.opt.enableflags |= mujoco.mjtEnableBit.mjENBL_ENERGY
        # Made on the first render(): state-only work (`data generate --no-frames`) needs no GL context.
        self._renderer: FrameRenderer | None = None
        self._camera_spec = camera
        self.body_names = [model.body(i).name for i in range(model.nbody)]
        self._tracked = [i for i in range(model.nbody)]
        self.contact_pairs: list[tuple[str, str]] = [
            (self.body_names[a], self.body_names[b])
            for ai, a in enumerate(self._tracked)
            for b in self._tracked[ai + 1 :]
        ]
        # pair_matrix[a, b] = index into contact_pairs of bodies a, b (symmetric), or -1.
        self._pair_matrix = np.full((model.nbody, model.nbody), -1, dtype=np.int64)
        k = 0
        for ai, a in enumerate(self._tracked):
            for b in self._tracked[ai + 1 :]:
                self._pair_matrix[a, b] = self._pair_matrix[b, a] = k
                k += 1

    # --- the per-scene parts -------------------------------------------------------------------------

    @property
    @abc.abstractmethod
    def state_dim(self) -> int: ...

    @abc.abstractmethod
    def config(self) -> dict[str, Any]:
        """Everything that changes the generated data: name, version, frame size, scene options."""

    @abc.abstractmethod
    def _reset(self, seed: int | None) -> None:
        """Reset physics to a seeded initial state."""

    @abc.abstractmethod
    def _step(self, action: np.ndarray) -> None:
        """Advance physics by one step of `dt` under `action`."""

    @abc.abstractmethod
    def state(self) -> np.ndarray:
        """The state vector (float64 [state_dim])."""

    @staticmethod
    @abc.abstractmethod
    def task_reward(next_state: np.ndarray, action: np.ndarray) -> np.ndarray:
        """The task reward for arriving at `next_state` [..., S] under `action` [..., A]; shape [...]."""

    @staticmethod
    def task_terminated(next_state: np.ndarray) -> np.ndarray:
        """Whether `next_state` [..., S] ends the episode; bool [...]. By default no state does."""
        return np.zeros(np.asarray(next_state).shape[:-1], dtype=bool)

    @staticmethod
    @abc.abstractmethod
    def read_bodies(states: np.ndarray) -> dict[str, np.ndarray]:
        """World positions (metres) of the named moving bodies, read from states [..., S]: name ->
        [..., 3]. Equal to MuJoCo's `xpos` on true states, so it applies to predicted states too."""

    def scripted_action(self, cache: dict) -> np.ndarray:
        """The scripted controller's action for the current true physics (`cache` persists over an
        episode; the `scripted` policy seeds `cache["x_ref"]` in [-0.5, 0.5]): by default the controller
        on the current state, for scenes whose state is all it reads."""
        return self.observed_action(self.state(), cache)

    @abc.abstractmethod
    def observed_action(self, state: np.ndarray, cache: dict) -> np.ndarray:
        """The scripted controller acting on a state observation [state_dim] instead of the true physics:
        the controller a policy can run in a learned world, where only the (predicted) state is seen."""

    @classmethod
    def options_for_state_dim(cls, state_dim: int) -> dict[str, Any]:
        """The scene options (`make_scene(name, **options)`) whose state vector has `state_dim` entries."""
        return {}

    def _markers(self) -> list[tuple[np.ndarray, float, tuple]]:
        return []

    # --- the shared parts ----------------------------------------------------------------------------

    def config_hash(self) -> str:
        """A short stable hash of `config()`, recorded in dataset manifests."""
        text = json.dumps(self.config(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def reset(self, seed: int | None = None, physics_state: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
        """Reset to a seeded initial state, or to a given physics state (qpos then qvel).

        Returns:
            (state, info) where info holds `physics_state`, `contacts`, `energy`.
        """
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
            raise ValueError(f"seed must be a non-negative int or None, got {seed!r}")
        self._reset(None if seed is None else int(seed))
        if physics_state is not None:
            self.set_physics_state(physics_state)
        return self.state(), self._info()

    def step(self, action: np.ndarray) -> StepResult:
        """Step physics by `dt` under `action` (not clipped: MuJoCo applies the ctrl ranges)."""
        action = self._check_action(action)
        self._step(action)
        # mj_step leaves kinematics, contacts and energy one substep behind the new qpos/qvel; bring
        # them up to date so render(), contacts() and energy() describe the state we return. This does
        # not change the trajectory: mj_step recomputes all of it before integrating.
        mujoco.mj_forward(self.model, self.data)
        state = self.state()
        return StepResult(
            state=state,
            reward=float(self.task_reward(state, action)),
            terminated=bool(self.task_terminated(state)),
            info=self._info(),
        )

    def _check_action(self, action: Any) -> np.ndarray:
        a = np.asarray(action, dtype=np.float64)
        if a.shape != self.action_space.shape:
            raise ValueError(f"{self.name}: action must have shape {self.action_space.shape}, got {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{self.name}: action must be finite, got {a.tolist()}")
        return a

    def _info(self) -> dict[str, Any]:
        return {"physics_state": self.physics_state(), "contacts": self.contacts(), "energy": self.energy()}

    def render(self) -> np.ndarray:
        """An RGB frame, uint8 [H, W, 3], from the scene's fixed camera."""
        if self._renderer is None:
            self._renderer = FrameRenderer(self.model, self.width, self.height, self._camera_spec)
        return self._renderer.render(self.data, self._markers())

    @property
    def physics_dim(self) -> int:
        return self.model.nq + self.model.nv

    def physics_state(self) -> np.ndarray:
        """The full physics state: float64 [nq + nv] (qpos then qvel)."""
        return np.concatenate([self.data.qpos, self.data.qvel]).astype(np.float64)

    def start_is_valid(self, states: np.ndarray) -> np.ndarray:
        """Which states [B, S] the scene could start from (a generated start is resampled where not):
        every state by default."""
        return np.ones(len(states), dtype=bool)

    def consistent_states(self, states: np.ndarray) -> np.ndarray:
        """States [B, S] with the parts their other parts determine recomputed from those (a generated
        start's cos and sin of one angle, a fingertip from the joints), as the scene's own states
        always are: the states unchanged by default, where every part is free."""
        return np.asarray(states, np.float64).copy()

    def physics_from_state(self, state: np.ndarray) -> np.ndarray:
        """The physics state (qpos then qvel) whose state vector is `state`: how MuJoCo starts from a
        state a world model made (a prompt's generated start). Scenes whose state vector does not
        determine the physics state do not have it."""
        raise ValueError(f"{self.name}: its state vector does not give back a MuJoCo physics state, so MuJoCo "
                         f"cannot start from a generated state")

    def set_physics_state(self, physics_state: np.ndarray) -> None:
        """Restore a state from `physics_state()`; kinematics, contacts and energy are recomputed."""
        x = np.asarray(physics_state, dtype=np.float64)
        if x.shape != (self.physics_dim,):
            raise ValueError(
                f"{self.name}: physics_state must have shape ({self.physics_dim},) = nq {self.model.nq} + "
                f"nv {self.model.nv}, got {x.shape}"
            )
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{self.name}: physics_state must be finite")
        self._set_qpos_qvel(x[: self.model.nq], x[self.model.nq :])

    def _set_qpos_qvel(self, qpos: np.ndarray, qvel: np.ndarray) -> None:
        self.data.qpos[:] = qpos
        self.data.qvel[:] = qvel
        mujoco.mj_forward(self.model, self.data)

    def body_positions(self) -> dict[str, np.ndarray]:
        """World positions (metres) of the named bodies, world excluded."""
        return {n: self.data.xpos[i].copy() for i, n in enumerate(self.body_names) if i > 0 and n}

    def contacts(self) -> np.ndarray:
        """Which `contact_pairs` touch now: bool [len(contact_pairs)]."""
        out = np.zeros(len(self.contact_pairs), dtype=bool)
        if self.data.ncon:
            contact = self.data.contact
            k = self._pair_matrix[self.model.geom_bodyid[contact.geom1], self.model.geom_bodyid[contact.geom2]]
            out[k[k >= 0]] = True
        return out

    def contact_events(self) -> list[tuple[str, str]]:
        """The body pairs in contact now, by name."""
        return [p for p, on in zip(self.contact_pairs, self.contacts()) if on]

    def energy(self) -> float:
        """Total mechanical energy (potential + kinetic, joules) at the current state."""
        return float(self.data.energy[0] + self.data.energy[1])

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()

    def __enter__(self) -> Scene:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
