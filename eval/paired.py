"""Paired rollouts: the same initial physics state and the same actions through MuJoCo and a predictor.

MuJoCo goes first (`record_truth`): each episode is reset from its seed and driven by a behaviour
policy acting on the true physics (`scripted` by default, so that the pendulum stays up long enough
to test), and its actions are recorded. The predictors then replay those actions open loop from the
true first `context` steps (frames, states and the actions between them; one step by default),
never seeing ground truth again. Step 0 below is the last context step; the horizon counts from it.

- `model_rollout`: the world model, all episodes in one batch, argmax decoding (temperature 0).
- `copy_last`: the state and frame of step 0, repeated.
- `constant_velocity`: every joint keeps its velocity at step 0 (MuJoCo's `mj_integratePos` on that
  physics state, read back through the scene, so e.g. Reacher's angles stay on the circle); its
  frames are the first frame repeated. The state at step 0 carries the velocities, so this needs
  no second true step; but Gymnasium resets start nearly at rest (|qvel| <= 0.01), so with one
  context step it is close to `copy_last` there, and `context=2` gives it one step of motion.

Arrays are padded to the horizon T after an episode terminates (states and frames repeat the last
true one, actions are zero); `Truth.mask` [E, T] marks the steps that exist.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import mujoco
import numpy as np
import torch
from tqdm.auto import tqdm

from worldsim.envs import Scene
from worldsim.envs.episodes import episode_seeds, run_episode
from worldsim.envs.policies import make_policy


@dataclass
class Truth:
    """MuJoCo's side: E episodes of up to T steps after the context, index 0 the last context step."""

    scene: str
    dt: float
    states: np.ndarray  # [E, T+1, S] float64
    frames: np.ndarray  # [E, T+1, H, W, 3] uint8
    actions: np.ndarray  # [E, T, A] float32
    rewards: np.ndarray  # [E, T]
    terminated: np.ndarray  # [E, T] bool
    lengths: np.ndarray  # [E] steps taken before termination or the horizon
    physics0: np.ndarray  # [E, nq+nv] physics states at step 0
    context_frames: np.ndarray  # [E, C, H, W, 3] the context steps, the last one being step 0
    context_states: np.ndarray  # [E, C, S]
    context_actions: np.ndarray  # [E, C-1, A]
    seeds: list[dict[str, int]] = field(default_factory=list)

    @property
    def horizon(self) -> int:
        return self.actions.shape[1]

    @property
    def mask(self) -> np.ndarray:
        return np.arange(1, self.horizon + 1)[None] <= self.lengths[:, None]


@dataclass
class Prediction:
    """A predictor's side, aligned with a `Truth`: index 0 is the true initial step."""

    name: str
    states: np.ndarray  # [E, T+1, S]
    frames: np.ndarray | None  # [E, T+1, H, W, 3] uint8, or None when not decoded
    rewards: np.ndarray  # [E, T]
    terminated: np.ndarray  # [E, T] bool
    # The scene's own termination rule on the predicted states (`Scene.task_terminated`), for a
    # predictor whose `terminated` comes from elsewhere (the world model's own: its outcome head, or
    # the transformer's termination head).
    terminated_rule: np.ndarray | None = None  # [E, T] bool


def _pad(x: np.ndarray, n: int, fill: str) -> np.ndarray:
    if len(x) >= n:
        return x[:n]
    pad = np.repeat(x[-1:], n - len(x), 0) if fill == "edge" else np.zeros((n - len(x), *x.shape[1:]), x.dtype)
    return np.concatenate([x, pad])


def record_truth(scene: Scene, episodes: int, horizon: int, seed: int, policy: str = "scripted",
                 context: int = 1, progress: bool = False) -> Truth:
    """Run `episodes` seeded episodes of `context - 1 + horizon` steps (or to termination) in MuJoCo.

    Episode e is seeded as dataset episode e of seed `seed` (`envs.episodes.episode_seeds`); the
    shipped training sets used seed 1, the default evaluation seed 1000. The scene's own time limit
    is not applied: it is a truncation, not physics. An episode that terminates within its context
    has length 0 and is left out of every metric."""
    pol, c = make_policy(policy), context - 1
    keys = ("states", "frames", "actions", "rewards", "terminated")
    cols: dict[str, list] = {k: [] for k in (*keys, "physics0")}
    lengths, seeds = [], []
    for e in tqdm(range(episodes), desc=f"MuJoCo {scene.name}", disable=not progress, leave=False):
        ep = run_episode(scene, pol, seed, e, c + horizon)
        lengths.append(max(0, len(ep["actions"]) - c))
        reset_seed, policy_seed = episode_seeds(seed, e)
        seeds.append({"episode": e, "reset_seed": reset_seed, "policy_seed": policy_seed})
        cols["states"].append(_pad(ep["states"], c + horizon + 1, "edge"))
        cols["frames"].append(_pad(ep["frames"], c + horizon + 1, "edge"))
        cols["actions"].append(_pad(ep["actions"], c + horizon, "zero"))
        cols["rewards"].append(_pad(ep["rewards"].astype(np.float64), c + horizon, "zero"))
        cols["terminated"].append(_pad(ep["terminated"], c + horizon, "zero"))
        cols["physics0"].append(ep["physics"][min(c, len(ep["physics"]) - 1)])
    full = {k: np.stack(v) for k, v in cols.items()}
    return Truth(scene=scene.name, dt=float(scene.dt), lengths=np.asarray(lengths, np.int64), seeds=seeds,
                 states=full["states"][:, c:], frames=full["frames"][:, c:], actions=full["actions"][:, c:],
                 rewards=full["rewards"][:, c:], terminated=full["terminated"][:, c:], physics0=full["physics0"],
                 context_frames=full["frames"][:, : c + 1], context_states=full["states"][:, : c + 1],
                 context_actions=full["actions"][:, :c])


@torch.no_grad()
def model_rollout(wm, truth: Truth, decode: bool = True, progress: bool = False,
                  decode_batch: int = 256) -> Prediction:
    """Open-loop rollout of the world model from each episode's true context steps, all episodes in
    one batch; with `decode`, frames are decoded afterwards in batches, and without it the rollout
    carries no frames at all (action and state tokens alone, as `DSV4World-v0` steps for state
    observations)."""
    dev = wm.device
    e, t = truth.actions.shape[:2]
    tokens0 = None
    if decode:
        tokens0 = wm.encode(torch.from_numpy(np.ascontiguousarray(truth.context_frames)))  # [E, C, h, w]
    ctx_actions = torch.from_numpy(truth.context_actions).float() if truth.context_actions.shape[1] else None
    h = wm.start(tokens0, torch.from_numpy(truth.context_states).float(), ctx_actions)
    acts = torch.from_numpy(truth.actions).float().to(dev)
    codes, states, rewards, terms = [], [], [], []
    for i in tqdm(range(t), desc="world model", disable=not progress, leave=False):
        c, s, r, d = wm.step(h, acts[:, i], temperature=0.0)
        if c is not None:
            codes.append(c.cpu())
        states.append(s.double().cpu())
        rewards.append(r.double().cpu())
        terms.append(d.cpu())
    pred_states = np.concatenate([truth.states[:, :1], torch.stack(states, 1).numpy()], 1)
    frames = None
    if decode:
        all_codes = torch.stack(codes, 1).reshape(e * t, *codes[0].shape[1:])
        chunks = range(0, e * t, decode_batch)
        out = [wm.decode(all_codes[j : j + decode_batch]).cpu().numpy()
               for j in tqdm(chunks, desc="decode frames", disable=not progress, leave=False)]
        decoded = np.concatenate(out).reshape(e, t, *truth.frames.shape[2:])
        frames = np.concatenate([truth.frames[:, :1], decoded], 1)
    return Prediction("model", pred_states, frames, torch.stack(rewards, 1).numpy(), torch.stack(terms, 1).numpy())


def with_rule_termination(scene: Scene, truth: Truth, pred: Prediction) -> Prediction:
    """`pred` with `terminated_rule` filled in: the scene's termination rule on its predicted states."""
    pred.terminated_rule = _task_outcomes(scene, pred.states, truth.actions)[1]
    return pred


def _task_outcomes(scene: Scene, states: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The scene's task reward and termination on predicted states [E, T+1, S] under actions [E, T, A]."""
    nxt = states[:, 1:]
    return np.asarray(scene.task_reward(nxt, actions), np.float64), np.asarray(scene.task_terminated(nxt), bool)


def copy_last(scene: Scene, truth: Truth) -> Prediction:
    """The true state and frame of step 0, repeated to the horizon."""
    t = truth.horizon
    states = np.repeat(truth.states[:, :1], t + 1, 1)
    frames = np.broadcast_to(truth.frames[:, :1], truth.frames.shape)
    rew, term = _task_outcomes(scene, states, truth.actions)
    return Prediction("copy_last", states, frames, rew, term)


def constant_velocity(scene: Scene, truth: Truth) -> Prediction:
    """Each joint moves on at its initial velocity, frames copy the first (see the module docstring)."""
    m = scene.model
    e, t = truth.actions.shape[:2]
    states = np.empty_like(truth.states)
    for i in range(e):
        qpos0, qvel0 = truth.physics0[i, : m.nq], truth.physics0[i, m.nq :]
        for k in range(t + 1):
            qpos = qpos0.copy()
            mujoco.mj_integratePos(m, qpos, qvel0, k * truth.dt)
            scene.set_physics_state(np.concatenate([qpos, qvel0]))
            states[i, k] = scene.state()
    states[:, 0] = truth.states[:, 0]
    frames = np.broadcast_to(truth.frames[:, :1], truth.frames.shape)
    rew, term = _task_outcomes(scene, states, truth.actions)
    return Prediction("constant_velocity", states, frames, rew, term)


def perturbed_mujoco(scene: Scene, truth: Truth, eps: float = 1e-6, frames: bool = True) -> Prediction:
    """MuJoCo itself, started from step 0's physics state with every position moved by `eps`, then
    driven by the recorded actions open loop: a reference for how far ahead the scene can be
    predicted at all from an almost exact state. Chaotic or unstable scenes (bounce, the balancing
    pendulum) part from the truth within the horizon even so. A run that terminates stops there and
    is padded like the truth."""
    m = scene.model
    e, t = truth.actions.shape[:2]
    states = truth.states.copy()
    out_frames = truth.frames.copy() if frames else None
    rewards, term = np.zeros((e, t)), np.zeros((e, t), bool)
    for i in range(e):
        ph = truth.physics0[i].copy()
        ph[: m.nq] += eps
        scene.reset(physics_state=ph)
        for k in range(t):
            r = scene.step(truth.actions[i, k])
            states[i, k + 1], rewards[i, k], term[i, k] = r.state, r.reward, r.terminated
            if frames:
                out_frames[i, k + 1] = scene.render()
            if r.terminated:
                states[i, k + 2 :] = r.state
                if frames:
                    out_frames[i, k + 2 :] = out_frames[i, k + 1]
                break
    return Prediction("mujoco_perturbed", states, out_frames, rewards, term)


def from_truth(truth: Truth) -> Prediction:
    """MuJoCo as its own predictor: the reference that scores 100."""
    return Prediction("mujoco", truth.states.copy(), truth.frames.copy(), truth.rewards.copy(),
                      truth.terminated.copy())
