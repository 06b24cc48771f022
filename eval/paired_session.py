"""The world and MuJoCo stepped side by side: the same initial state, then the same actions, one step at
a time. `worldsim play` drives it live; `paired_rollout` records a whole episode of it.

    session = PairedSession("Reacher-v5")
    session.reset(seed=0)
    step = session.step(np.zeros(2))       # {"real_reward": ..., "world_reward": ..., ...}
    model_frame, mujoco_frame = session.frames()
"""

from __future__ import annotations

import numpy as np

from worldsim.envs.world_batch import WorldBatch


class PairedSession:
    """One world (a batch of one) beside the MuJoCo scene it was reset from.

    The world's reward is the model's own; MuJoCo keeps stepping past a task termination, so both
    sides go on for as long as the caller steps them, and `real_end` / `world_end` record where each
    episode ended (None while it has not). `returns` sums each side's reward up to its own end, as an
    episode's return is; `episode_over` says when both have ended or the scene's time limit is reached.
    """

    def __init__(self, scene: str, checkpoint: str | None = None, device: str = "auto", temperature: float = 0.0,
                 precision: str = "auto"):
        self.batch = WorldBatch(scene, 1, checkpoint, device, temperature=temperature, precision=precision)
        self.real = self.batch.real  # the batch's own MuJoCo scene: it renders at the model's frame size
        self.action_space = self.real.action_space
        self.t, self.real_end, self.world_end = 0, None, None
        self.returns = {"real": 0.0, "world": 0.0}
        self.real_state = None

    def reset(self, seed: int) -> None:
        """Both sides to the initial state of MuJoCo's `reset(seed)`."""
        self.batch.reset_rows(np.array([0]), [seed], [None])  # also resets `real` to seed's initial state
        self.real_state = self.real.state()
        self.t, self.real_end, self.world_end = 0, None, None
        self.returns = {"real": 0.0, "world": 0.0}

    @property
    def world_state(self) -> np.ndarray:
        return self.batch.state[0]

    def step(self, action: np.ndarray) -> dict[str, float | bool]:
        """Step both under `action` (clipped to the action box)."""
        a = np.clip(np.asarray(action, dtype=np.float64), self.action_space.low, self.action_space.high)
        res = self.real.step(a)
        out = self.batch.step(a[None].astype(np.float32))
        self.t += 1
        self.real_state = res.state
        counts = self.t <= self.time_limit  # a step past the time limit belongs to no episode
        if self.real_end is None and counts:
            self.returns["real"] += float(res.reward)
        if self.world_end is None and counts:
            self.returns["world"] += float(out["reward_model"][0])
        if res.terminated and self.real_end is None:
            self.real_end = self.t
        if bool(out["terminated_model"][0]) and self.world_end is None:
            self.world_end = self.t
        return {"real_reward": float(res.reward), "world_reward": float(out["reward_model"][0]),
                "real_terminated": bool(res.terminated), "world_terminated": bool(out["terminated_model"][0])}

    @property
    def time_limit(self) -> int:
        """The scene's episode length: an episode that has not terminated is truncated there."""
        return self.real.max_episode_steps

    @property
    def episode_over(self) -> bool:
        """Both sides have terminated, or the episode has reached the scene's time limit."""
        return (self.real_end is not None and self.world_end is not None) or self.t >= self.time_limit

    def frames(self, real: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """The world's decoded frame and MuJoCo's render (None unless `real`): uint8 [H, W, 3] each."""
        return self.batch.frames()[0].copy(), self.real.render() if real else None

    def close(self) -> None:
        """Free both sides' renderers; a second call does nothing."""
        if self.batch is not None:
            self.batch.close()
            self.batch = None
