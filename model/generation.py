"""Clips from a sentence: `WorldModel.generate`.

    clips = wm.generate("The red ball starts high on the left, moving right.", samples=4, steps=240, seed=0,
                        **start_guides(make_scene("bounce")))   # worldsim.envs.captions.start_guides
    clips.states     # [K, T+1, S] raw units, the prompt's sampled start first
    clips.tokens     # [K, T+1, h, w] codes; wm.decode(clips.tokens) gives the frames

The prompt is read twice: by the scene's prompt language (`worldsim.model.prompt_language.parse`),
which refuses what it cannot read or what the scene cannot be, and by the backbone (its words as the
stream's prefix, `worldsim.model.prompt`), which samples the initial state and renders the first
frame. The clip is then the world's own rollout from them, under the given actions (zero by default).
The scene's guides make the start one the scene can have: the parts of a state its other parts
determine are recomputed (`consistent`), a start it cannot have is drawn again (`valid`), and where
the prompt says what happens after the start (what a ball hits first), the start is the one of
`candidates` sampled whose rollout in the world itself shows it (`check`).

`wm` is a `worldsim.model.world_model.WorldModel`, which imports this module for its `generate`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from worldsim.model.prompt_language import language, parse

FREE_SAMPLING = "the prompt is empty: the initial state is sampled freely from what the world was trained on"


@dataclass
class Clips:
    """K clips of one prompt. `slots`: what the prompt says; `note`: a remark for the user (or "")."""

    prompt: str
    slots: dict[str, str]
    states: torch.Tensor  # [K, T+1, S] raw units
    tokens: torch.Tensor | None  # [K, T+1, h, w] long, None without frames
    actions: torch.Tensor  # [K, T, A]
    rewards: torch.Tensor  # [K, T]
    terminated: torch.Tensor  # [K, T] bool
    note: str = ""
    seconds: dict[str, float] = field(default_factory=dict)


def check_prompt(wm, prompt: str) -> dict[str, str]:
    """The slots of `prompt` in `wm`'s scene (a `PromptError` when it cannot be read or made), after
    checking that `wm` reads prompts at all."""
    if wm.prompt is None:
        raise ValueError(f"this world model of {wm.cfg.scene} reads no prompts (it has no prompt prefix); train one "
                         f"with `worldsim train prompt`, or use a shipped world that has one")
    slots = parse(language(wm.cfg.scene), prompt)
    wm.prompt.word_ids([prompt])  # words the scene's language has but this world never saw
    return slots


@torch.no_grad()
def start_from_prompt(wm, prompts: list[str], generator: torch.Generator | None = None,
                      temperature: float = 1.0, frames: bool = True, valid=None, tries: int = 50, check=None,
                      candidates: int = 16, actions: torch.Tensor | None = None, consistent=None
                      ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Initial raw states [B, S] sampled from the prompts and their first frames' codes [B, h, w] (None
    without `frames`). Each prompt is checked (`check_prompt`) first.

    Args:
        consistent: a function of raw states [n, S] (numpy) -> [n, S] that recomputes the parts of a
            state its other parts determine, such as a scene's `consistent_states` (each dimension is
            sampled to a bin's width, so a sampled cos and sin of one angle, or a fingertip and the
            joints, agree only roughly); applied to every sample.
        valid: a function of raw states [n, S] (numpy) -> bool [n], such as a scene's `start_is_valid`;
            rows it refuses are drawn again, up to `tries` times (a start still refused then is kept).
        check: what a rollout shows of the slots a start decides only through the rollout (a
            `worldsim.envs.captions.RolloutCheck`: `slots`, `steps`, `says(said)` and
            `check(said, states)`, the count of the said slots the states [T+1, S] show).
            For each prompt that says such a slot, `candidates` starts are sampled and rolled out by
            the world itself (physics only, `check.steps` steps under `actions`), and the start whose
            rollout shows the most of them is kept (the first sampled among equals).
        actions: [B, T, A] the clips' actions, for `check`'s rollouts (zero where None or shorter).
    """
    if candidates < 1:
        raise ValueError(f"candidates must be >= 1, got {candidates}")
    if actions is not None and (actions.ndim != 3 or len(actions) != len(prompts)):
        raise ValueError(f"actions must be [{len(prompts)}, T, A] (a row per prompt), got {tuple(actions.shape)}")
    said = [check_prompt(wm, p) for p in prompts]
    words = wm.prompt.word_ids(prompts)
    draw = (temperature, generator, valid, tries, consistent)
    rows = [i for i, s in enumerate(said) if check is not None and candidates > 1 and check.says(s)]
    if not rows:
        state = _sample(wm, words, *draw)
    else:  # rows chosen by rollout are sampled as candidates only
        state = torch.empty(len(prompts), wm.cfg.dynamics.state_dim, device=words[0].device)
        free = torch.tensor([i for i in range(len(prompts)) if i not in rows], dtype=torch.long)
        if len(free):
            state[free] = _sample(wm, (words[0][free], words[1][free]), *draw)
        state[rows] = _chosen_by_rollout(wm, words, rows, [said[i] for i in rows], draw, check, candidates,
                                         actions)
    if not frames:
        return state, None
    logits = wm.prompt.first_frame_logits(wm.dynamics, wm.normalize_state(state))
    g = wm.dynamics.cfg.grid
    return state, wm.dynamics.predict_codes(logits).view(len(prompts), g, g)


def _sample(wm, words, temperature: float, generator, valid, tries: int, consistent
            ) -> torch.Tensor:
    """Raw states [B, S] sampled from word ids, made `consistent`; rows `valid` refuses are drawn again."""

    def draw(w) -> torch.Tensor:
        s = _bounded(wm, wm.prompt.sample_state(wm.dynamics, w, temperature, generator))
        if consistent is None:
            return s
        return torch.as_tensor(np.asarray(consistent(s.double().cpu().numpy())), dtype=s.dtype, device=s.device)

    state = draw(words)
    for _ in range(tries if valid is not None else 0):
        bad = torch.from_numpy(~np.asarray(valid(state.double().cpu().numpy()), dtype=bool)).to(state.device)
        if not bool(bad.any()):
            break
        state[bad] = draw((words[0][bad], words[1][bad]))
    return state


def _chosen_by_rollout(wm, words, rows: list[int], said: list[dict[str, str]], draw: tuple, check,
                       candidates: int, actions) -> torch.Tensor:
    """For each of `rows`, the start [len(rows), S] of `candidates` sampled (`_sample(*draw)`) whose
    rollout `check` scores best."""
    idx = torch.tensor(rows, device=words[0].device).repeat_interleave(candidates)
    cand = _sample(wm, (words[0][idx], words[1][idx]), *draw)
    acts = torch.zeros(len(idx), check.steps, wm.cfg.dynamics.action_dim, device=wm.device)
    if actions is not None:
        given = actions[torch.tensor(rows)][:, : check.steps].to(wm.device)
        acts[:, : given.shape[1]] = given.repeat_interleave(candidates, 0)
    states = rollout_states(wm, cand, acts).double().cpu().numpy()
    states = states.reshape(len(rows), candidates, *states.shape[1:])
    score = np.array([[check(s, one) for one in per] for s, per in zip(said, states)])
    best = torch.from_numpy(score.argmax(1)).to(cand.device)
    return cand.view(len(rows), candidates, -1)[torch.arange(len(rows), device=cand.device), best]


@torch.no_grad()
def rollout_states(wm, states0: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """The world's physics-only rollout from raw states [B, S] under actions [B, T, A]: states [B, T+1, S]."""
    handle = wm.start(None, states0[:, None])
    out = [states0]
    for t in range(actions.shape[1]):
        out.append(wm.step(handle, actions[:, t])[1])
    return torch.stack(out, 1)


def _missed(check, slots: dict[str, str], states: torch.Tensor, candidates: int) -> list[str]:
    """A note naming how many clips (states [K, T+1, S]) do not show the rollout slots `check` reads."""
    if check is None or not check.says(slots) or states.shape[1] <= check.steps:
        return []  # a clip shorter than the check's rollout cannot show what the start was chosen for
    want = sum(k.split(".")[1] in check.slots for k in slots)
    missed = sum(check(slots, s) < want for s in states.double().cpu().numpy())
    if not missed:
        return []
    how = "the first start sampled" if candidates == 1 else \
        f"each start the best of {candidates} by the world's own rollout"
    return [f"{missed} of {len(states)} clip(s) do not show all the prompt says of "
            f"{', '.join(check.slots)} ({how})"]


def _bounded(wm, state: torch.Tensor) -> torch.Tensor:
    """States held to the bounds every rollout state keeps (when the world has them)."""
    return state if wm.state_low is None else state.clamp(wm.state_low, wm.state_high)


@torch.no_grad()
def generate(wm, prompt: str, samples: int = 1, steps: int = 240, actions=None, seed: int = 0,
             temperature: float = 1.0, frame_temperature: float = 0.0, frames: bool = True, valid=None,
             check=None, candidates: int = 16, consistent=None) -> Clips:
    """`samples` clips of `steps` steps from `prompt` (see the module docstring).

    Args:
        actions: [T, A] (the same for every clip) or [K, T, A]; None: zero actions.
        seed: seeds the initial states' sampling (and the frames', with frame_temperature > 0).
        temperature: of the initial state's sampling (0: each bin's most likely value).
        frames: False rolls out the physics alone (no first frame, no codes).
        valid, consistent: refuse starts the scene cannot have, drawn again, and recompute the parts
            of a start its other parts determine (`start_from_prompt`); the scene's `start_is_valid`
            and `consistent_states` (`worldsim generate`, the env and `eval prompts` pass them).
        check, candidates: choose the start among `candidates` by what the world's rollout shows of
            the prompt's rollout slots (`start_from_prompt`); the scene's `rollout_check`. A clip
            that still does not show them is named in `Clips.note`.
    """
    if samples < 1 or steps < 0:
        raise ValueError(f"samples must be >= 1 and steps >= 0, got {samples} and {steps}")
    slots = check_prompt(wm, prompt)
    cfg, dev = wm.cfg.dynamics, wm.device
    acts = torch.zeros(samples, steps, cfg.action_dim) if actions is None else torch.as_tensor(
        np.asarray(actions), dtype=torch.float32)
    if acts.ndim == 2:
        acts = acts[None].expand(samples, -1, -1)
    if tuple(acts.shape) != (samples, steps, cfg.action_dim):
        raise ValueError(f"actions must be [{steps}, {cfg.action_dim}] or [{samples}, {steps}, {cfg.action_dim}], "
                         f"got {tuple(np.shape(actions))}")
    acts = acts.to(dev)
    gen = torch.Generator(device=dev).manual_seed(seed)
    t_start = time.perf_counter()
    state, codes = start_from_prompt(wm, [prompt] * samples, gen, temperature, frames, valid, check=check,
                                     candidates=candidates, actions=acts, consistent=consistent)
    t_prompt = time.perf_counter()
    handle = wm.start(None if codes is None else codes[:, None], state[:, None], seed=seed)
    all_states, all_tokens = [state], [codes]
    rewards, terms = [], []
    for t in range(steps):
        tokens, state, reward, term = wm.step(handle, acts[:, t], temperature=frame_temperature)
        all_states.append(state)
        all_tokens.append(tokens)
        rewards.append(reward)
        terms.append(term)
    t_end = time.perf_counter()
    empty = torch.zeros(samples, 0, device=dev)
    states = torch.stack(all_states, 1)
    notes = ([] if prompt.strip() else [FREE_SAMPLING]) + _missed(check, slots, states, candidates)
    return Clips(prompt=prompt, slots=slots, states=states,
                 tokens=None if codes is None else torch.stack(all_tokens, 1), actions=acts,
                 rewards=torch.stack(rewards, 1) if rewards else empty,
                 terminated=torch.stack(terms, 1) if terms else empty.bool(),
                 note="; ".join(notes),
                 seconds={"prompt": t_prompt - t_start, "rollout": t_end - t_prompt})
