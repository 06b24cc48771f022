"""Rollout videos: the world model alone, or beside MuJoCo from the same state under the same actions.

    worldsim rollout --scene Reacher-v5 --steps 240 --policy smooth --seed 0 --out rollout.mp4 --side-by-side
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from worldsim.core.video import side_by_side as compose
from worldsim.core.video import write_video
from worldsim.envs.policies import make_policy
from worldsim.eval.paired_session import PairedSession

POLICIES = ("random", "smooth", "scripted")


@dataclass
class PairedRollout:
    """One episode through the world model and (when asked) MuJoCo: frames uint8 [T+1, H, W, 3],
    states [T+1, S], actions [T, A]; `true_*` are None without ground truth."""

    model_frames: np.ndarray
    model_states: np.ndarray
    actions: np.ndarray
    true_frames: np.ndarray | None
    true_states: np.ndarray | None
    true_end: int | None  # the step at which MuJoCo's task terminated, if it did
    fps: float


def paired_rollout(scene: str, steps: int, policy: str = "smooth", seed: int = 0, checkpoint: str | None = None,
                   device: str = "auto", ground_truth: bool = True, temperature: float = 0.0,
                   progress: bool = True, precision: str = "auto") -> PairedRollout:
    """Roll the world model (and MuJoCo, with `ground_truth`) for `steps` steps from the real initial
    state of `reset(seed)`, under actions the behaviour `policy` takes in MuJoCo.

    MuJoCo keeps stepping past a task termination (e.g. the pendulum falling), so videos show the
    whole horizon; `true_end` records where the task itself ended.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {policy!r}")
    session = PairedSession(scene, checkpoint, device, temperature=temperature, precision=precision)
    pol = make_policy(policy)
    try:
        session.reset(seed)
        pol.reset(session.real, seed)
        model, true = session.frames(real=ground_truth)
        m_frames, m_states, t_frames, t_states = [model], [session.world_state.copy()], [true], [session.real_state]
        actions = []
        for _ in tqdm(range(steps), desc=f"rollout {scene}", disable=not progress, dynamic_ncols=True):
            a = np.asarray(pol.act(session.real), dtype=np.float64)
            session.step(a)
            model, true = session.frames(real=ground_truth)
            m_frames.append(model)
            m_states.append(session.world_state.copy())
            t_frames.append(true)
            t_states.append(session.real_state)
            actions.append(a)
        true_end, fps = session.real_end, 1.0 / session.real.dt
    finally:
        session.close()
    return PairedRollout(
        model_frames=np.stack(m_frames), model_states=np.stack(m_states), actions=np.stack(actions),
        true_frames=np.stack(t_frames) if ground_truth else None,
        true_states=np.stack(t_states) if ground_truth else None,
        true_end=true_end, fps=fps,
    )


def write_rollout_video(out: str | Path, roll: PairedRollout | list[PairedRollout], fps: float | None = None,
                        scale: int = 4, side_by_side: bool = False) -> Path:
    """The model's frames, or [model | MuJoCo | |difference|] with `side_by_side`, as an mp4; a list of
    rollouts (episodes of one scene) plays one after another."""
    rolls = roll if isinstance(roll, list) else [roll]
    if side_by_side and any(r.true_frames is None for r in rolls):
        raise ValueError("side_by_side needs a rollout made with ground_truth=True")
    frames = [compose(r.model_frames, r.true_frames) if side_by_side else r.model_frames for r in rolls]
    return write_video(out, np.concatenate(frames), fps=fps or rolls[0].fps, scale=scale)
