"""Captions from ground truth: each episode's slots read off its own states, said in varied wording.

    worldsim data caption data/bounce        # writes data/bounce/captions.json

`episode_slots(scene, states)` reads the slots of `worldsim.model.prompt_language` off an episode's
state sequence [L+1, S], the same way for a MuJoCo episode and for a world model's predicted states,
so a generated clip is scored by reading its own states back:

- bounce, per ball: where it starts (x: left / centre / right thirds of the box; height: low below
  0.8 m, high above 1.4 m, else middle), how it moves at the start (still below 0.75 m/s, else one
  of eight directions, a component counting when it is over 38% of the speed, sin 22.5 deg), and
  what it hits first: the first step whose velocity change departs from free flight by more than
  0.6 m/s (gravity changes vz by 0.41 m/s a step; the push on ball 0 its vx by at most 0.06),
  credited to the nearest surface or ball on the side the impulse came from ("nothing" if none).
- InvertedPendulum: which way the pole starts tilted (right: a positive angle), how much (barely
  below 0.005 rad), and whether it falls (|angle| past 0.2 rad, the task's termination).
- Reacher: where the target is, seen from above (eight 45-degree sectors; near within 0.1 m of the
  base), and which way the arm starts bent (the sign of the shoulder angle).
- Pusher: whether the puck starts left or right of the goal in the image, near or far (0.23 m, the
  median distance at reset).

A caption says a random part of an episode's slots (1 to all entities, 1 to all of an entity's
slots), so that a prompt that leaves things unsaid is what the model learns to sample. Captions that
would say a held-out combination of slots (`HELD_OUT`) say only one of its halves: those
combinations are never seen in training and score generalisation.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from worldsim.envs.bounce import DT as BOUNCE_DT
from worldsim.envs.bounce import HALF_WIDTH, HEIGHT, RADIUS
from worldsim.envs.loader import EpisodeDataset
from worldsim.envs.manifest import read_manifest
from worldsim.envs.shards import write_file
from worldsim.model.prompt_language import language, phrase

CAPTIONS = "captions.json"
CAPTIONER_VERSION = 1
CAPTIONS_PER_EPISODE = 4

# Slot combinations no training caption says together (each is said alone): held out to score
# prompts of combinations never seen.
HELD_OUT: dict[str, tuple[dict[str, str], ...]] = {
    "bounce": ({"red.x": "right", "red.height": "high"}, {"green.x": "left", "green.height": "low"},
               {"blue.x": "centre", "blue.motion": "up"}),
    "InvertedPendulum-v5": ({"pole.tilt": "left", "pole.falls": "no"},),
    "Reacher-v5": ({"target.side": "top-left", "target.reach": "far"},),
    "Pusher-v5": ({"puck.side": "right", "puck.reach": "far"},),
}

# Slots a start alone does not decide: they are read off the rollout that follows it.
ROLLOUT_SLOTS = ("hits", "falls")
# Of those, the ones a start decides under the clip's actions, and the steps of rollout that show
# them: what a bounce ball hits first (every reset's balls touch something within 2 s, 48 steps; the
# push on ball 0 barely matters). Whether the pole falls is the actions' doing, so no start is chosen
# for it.
DECIDED_BY_START: dict[str, tuple[tuple[str, ...], int]] = {"bounce": (("hits",), 48)}

_GRAVITY_STEP = 9.81 * BOUNCE_DT


def _bounce_slots(states: np.ndarray) -> dict[str, str]:
    n = states.shape[1] // 4
    pos = states[:, : 2 * n].reshape(-1, n, 2)
    vel = states[:, 2 * n :].reshape(-1, n, 2)
    colours = language("bounce").entities
    names = list(colours)[:n]
    slots: dict[str, str] = {}
    hits = _first_hits(pos, vel, names)
    for i, c in enumerate(names):
        x, z = pos[0, i]
        slots[f"{c}.x"] = "left" if x < -HALF_WIDTH / 3 else "right" if x > HALF_WIDTH / 3 else "centre"
        slots[f"{c}.height"] = "low" if z < 0.8 else "high" if z > 1.4 else "middle"
        slots[f"{c}.motion"] = _direction(*vel[0, i])
        slots[f"{c}.hits"] = hits[i]
    return slots


def _direction(vx: float, vz: float) -> str:
    speed = float(np.hypot(vx, vz))
    if speed < 0.75:
        return "still"
    h = "left" if vx < -0.38 * speed else "right" if vx > 0.38 * speed else ""
    v = "down" if vz < -0.38 * speed else "up" if vz > 0.38 * speed else ""
    return "-".join(d for d in (v, h) if d)


def _first_hits(pos: np.ndarray, vel: np.ndarray, names: list[str], threshold: float = 0.6) -> list[str]:
    """What each ball hits first: pos, vel [L+1, n, 2] (x, z)."""
    n = pos.shape[1]
    out = ["nothing"] * n
    impulse = np.diff(vel, axis=0)  # [L, n, 2]
    impulse[..., 1] += _GRAVITY_STEP
    for i in range(n):
        steps = np.flatnonzero(np.linalg.norm(impulse[:, i], axis=1) > threshold)
        if len(steps) == 0:
            continue
        t = steps[0]
        imp = impulse[t, i]
        best, best_gap = "nothing", np.inf
        for p in (pos[t, i], pos[t + 1, i]):  # the impact happened between the two samples
            x, z = p
            cands = [(z - RADIUS, (0.0, 1.0), "floor"), (HEIGHT - z - RADIUS, (0.0, -1.0), "ceiling"),
                     (x + HALF_WIDTH - RADIUS, (1.0, 0.0), "left wall"),
                     (HALF_WIDTH - x - RADIUS, (-1.0, 0.0), "right wall")]
            for j in range(n):
                if j != i:
                    for q in (pos[t, j], pos[t + 1, j]):
                        d = p - q
                        dist = float(np.linalg.norm(d))
                        cands.append((dist - 2 * RADIUS, tuple(d / max(dist, 1e-9)), f"{names[j]} ball"))
            facing = [c for c in cands if np.dot(c[1], imp) > 0] or cands
            gap, _, what = min(facing, key=lambda c: c[0])
            if gap < best_gap:
                best, best_gap = what, gap
        out[i] = best
    return out


def _pendulum_slots(states: np.ndarray) -> dict[str, str]:
    angle = float(states[0, 1])
    return {"pole.tilt": "right" if angle > 0 else "left", "pole.lean": "barely" if abs(angle) < 0.005 else "slightly",
            "pole.falls": "yes" if bool((np.abs(states[:, 1]) > 0.2).any()) else "no"}


_SECTORS = ("right", "top-right", "top", "top-left", "left", "bottom-left", "bottom", "bottom-right")


def _reacher_slots(states: np.ndarray) -> dict[str, str]:
    tx, ty = states[0, 4:6]
    sector = _SECTORS[int(np.round(np.arctan2(ty, tx) / (np.pi / 4))) % 8]
    return {"target.side": sector, "target.reach": "near" if np.hypot(tx, ty) < 0.1 else "far",
            "arm.bend": "up" if states[0, 2] > 0 else "down"}


def _pusher_slots(states: np.ndarray) -> dict[str, str]:
    obj, goal = states[0, 17:19], states[0, 20:22]
    return {"puck.side": "left" if obj[0] < goal[0] else "right",
            "puck.reach": "near" if np.linalg.norm(obj - goal) < 0.23 else "far"}


_SLOTS = {"bounce": _bounce_slots, "InvertedPendulum-v5": _pendulum_slots, "Reacher-v5": _reacher_slots,
          "Pusher-v5": _pusher_slots}


def _bounce_symmetries(state_dim: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(index, sign) pairs mapping a bounce state onto an equally lawful one: every order of the balls,
    each also mirrored left to right (x and vx negated). Gravity and the box are unchanged by both."""
    n = state_dim // 4
    out = []
    for perm in itertools.permutations(range(n)):
        idx = np.concatenate([[2 * b, 2 * b + 1] for b in perm] + [[2 * n + 2 * b, 2 * n + 2 * b + 1] for b in perm])
        for mirror in (False, True):
            sign = np.ones(state_dim)
            if mirror:
                sign[0::2] = -1.0  # x and vx of every ball sit at even indices
            out.append((idx, sign))
    return out


def symmetries(scene: str, state_dim: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The scene's symmetries as (index, sign): `states[..., index] * sign` is another episode the
    physics allows (the identity first). bounce: ball orders and the left-right mirror (12 with three
    balls: the push on ball 0 moves with its ball, a change of at most 0.06 m/s a step that a first
    contact seldom feels); the pendulum: the mirror; the others: the identity alone."""
    ident = (np.arange(state_dim), np.ones(state_dim))
    if scene == "bounce":
        return _bounce_symmetries(state_dim)
    if scene == "InvertedPendulum-v5":
        return [ident, (np.arange(state_dim), -np.ones(state_dim))]
    return [ident]


def captioned_scene(scene: str) -> bool:
    """Whether `scene` has captions (and a prompt language)."""
    return scene in _SLOTS


def episode_slots(scene: str, states: np.ndarray) -> dict[str, str]:
    """Every slot of an episode, from its states [L+1, S] (a MuJoCo episode's or a model's rollout's)."""
    if scene not in _SLOTS:
        raise ValueError(f"scene {scene!r} has no captions; scenes with them: {', '.join(_SLOTS)}")
    states = np.asarray(states, np.float64)
    if states.ndim != 2 or len(states) < 1:
        raise ValueError(f"states must be [L+1, S], got {states.shape}")
    return _SLOTS[scene](states)


@dataclass(frozen=True)
class RolloutCheck:
    """How many of the rollout slots a prompt says (of `slots`) a rollout's states show: how
    `WorldModel.generate` chooses, among candidate starts, one whose own rollout does what the prompt
    says (`worldsim.model.generation.start_from_prompt`)."""

    scene: str
    slots: tuple[str, ...]
    steps: int

    def says(self, said: dict[str, str]) -> bool:
        """Whether the prompt's slots `said` hold any that this check reads."""
        return any(k.split(".")[1] in self.slots for k in said)

    def __call__(self, said: dict[str, str], states: np.ndarray) -> int:
        """How many of `said`'s checked slots the states [T+1, S] show."""
        got = episode_slots(self.scene, states)
        return sum(got.get(k) == v for k, v in said.items() if k.split(".")[1] in self.slots)


def rollout_check(scene: str) -> RolloutCheck | None:
    """The scene's `RolloutCheck`, or None where no rollout slot is the start's to decide."""
    if scene not in DECIDED_BY_START:
        return None
    slots, steps = DECIDED_BY_START[scene]
    return RolloutCheck(scene, slots, steps)


def start_guides(scene) -> dict[str, Any]:
    """What `WorldModel.generate` and `start_from_prompt` take from a scene (a `Scene`) so that a prompt's
    start is one it can have: `valid` (its `start_is_valid`: others are drawn again), `consistent` (its
    `consistent_states`) and `check` (its `rollout_check`: a start chosen by what its rollout shows)."""
    return {"valid": scene.start_is_valid, "consistent": scene.consistent_states, "check": rollout_check(scene.name)}


def held_out(scene: str, said: dict[str, str]) -> bool:
    """Whether slots `said` hold one of the scene's held-out combinations whole."""
    return any(all(said.get(k) == v for k, v in combo.items()) for combo in HELD_OUT.get(scene, ()))


def caption(scene: str, slots: dict[str, str], rng: np.random.Generator, allow_held_out: bool = False
            ) -> tuple[str, dict[str, str]]:
    """(text, the slots it says): a random part of an episode's `slots`, said in random wording. Unless
    `allow_held_out`, a held-out combination is cut to one of its halves. "nothing" hits go unsaid."""
    lang = language(scene)
    entities = [e for e in lang.entities if any(k.startswith(f"{e}.") for k in slots)]
    chosen = rng.permutation(entities)[: 1 + int(rng.integers(len(entities)))]
    said: dict[str, str] = {}
    for e in chosen:
        own = [k for k in slots if k.startswith(f"{e}.") and slots[k] != "nothing"]
        if own:
            for k in rng.permutation(own)[: 1 + int(rng.integers(len(own)))]:
                said[str(k)] = slots[str(k)]
    if not allow_held_out:
        for combo in HELD_OUT.get(scene, ()):
            if all(said.get(k) == v for k, v in combo.items()):
                said.pop(str(rng.choice(sorted(combo))))
    return phrase(lang, said, rng), said


def held_out_prompts(scene: str, episodes: list[dict[str, str]], n: int, rng: np.random.Generator
                     ) -> list[tuple[str, dict[str, str]]]:
    """Up to `n` prompts (text, the slots it says) that say one of the scene's held-out combinations
    whole, each with a random part of the other slots of an episode (of `episodes`' slots) that has it."""
    lang = language(scene)
    out = []
    combos = [c for c in HELD_OUT.get(scene, ()) if any(all(e.get(k) == v for k, v in c.items()) for e in episodes)]
    for i in range(n if combos else 0):
        combo = combos[i % len(combos)]
        having = [e for e in episodes if all(e.get(k) == v for k, v in combo.items())]
        slots = having[int(rng.integers(len(having)))]
        others = [k for k in slots if k not in combo and slots[k] != "nothing"]
        said = {**{k: slots[k] for k in rng.permutation(others)[: int(rng.integers(len(others) + 1))]}, **combo}
        out.append((phrase(lang, said, rng), said))
    return out


def caption_dataset(root: str | Path, seed: int = 0) -> dict[str, Any]:
    """Caption every episode of a complete dataset from its recorded states, and write
    `ROOT/captions.json` atomically; returns what it wrote. Captions are a function of the states,
    the dataset's seed and `seed`, so a rerun writes the same file."""
    root = Path(root)
    manifest = read_manifest(root)
    scene = manifest["scene"]
    if scene not in _SLOTS:
        raise ValueError(f"{root}: scene {scene!r} has no captions; scenes with them: {', '.join(_SLOTS)}")
    data = EpisodeDataset(root, frames=False, verify=False)
    episodes = []
    for i in range(len(data.lengths)):
        states = data.episode(i)["states"]
        slots = episode_slots(scene, states)
        rng = np.random.default_rng([seed, int(manifest["seed"]), int(data.episode_ids[i])])
        said = [caption(scene, slots, rng) for _ in range(CAPTIONS_PER_EPISODE)]
        episodes.append({"episode": int(data.episode_ids[i]), "slots": slots,
                         "captions": [{"text": t, "slots": s} for t, s in said]})
    out = {"captioner_version": CAPTIONER_VERSION, "scene": scene, "seed": seed,
           "scene_config_hash": manifest.get("scene_config_hash"), "held_out": list(HELD_OUT.get(scene, ())),
           "episodes": episodes}
    write_file(root / CAPTIONS, (json.dumps(out, indent=0) + "\n").encode())
    return out


def read_captions(root: str | Path) -> dict[str, Any]:
    """`ROOT/captions.json`, checked to be of this captioner and this dataset's scene."""
    root = Path(root)
    path = root / CAPTIONS
    if not path.is_file():
        raise ValueError(f"{root} has no {CAPTIONS}; write it with `worldsim data caption {root}`")
    try:
        caps = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); rewrite it with `worldsim data caption {root}`") from None
    if caps.get("captioner_version") != CAPTIONER_VERSION or caps.get("scene") != read_manifest(root)["scene"]:
        raise ValueError(f"{path} was written by another captioner or for another scene; rewrite it with "
                         f"`worldsim data caption {root}`")
    return caps
