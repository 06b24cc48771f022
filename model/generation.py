"""Clips from a sentence: `WorldModel.generate`.

    clips = wm.generate("The red ball starts high on the left, moving right.", samples=4, steps=240, seed=0)
    clips.states     # [K, T+1, S] raw units, the prompt's sampled start first
    clips.tokens     # [K, T+1, h, w] codes; wm.decode(clips.tokens) gives the frames

The prompt is read twice: by the scene's prompt language (`worldsim.model.prompt_language.parse`),
which refuses what it cannot read or what the scene cannot be, and by the backbone (its words as the
stream's prefix, `worldsim.model.prompt`), which samples the initial state and renders the first
frame. The clip is then the world's own rollout from them, under the given actions (zero by default).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from worldsim.model.prompt_language import language, parse

if TYPE_CHECKING:
    from worldsim.model.world_model import WorldModel

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


def check_prompt(wm: WorldModel, prompt: str) -> dict[str, str]:
    """The slots of `prompt` in `wm`'s scene (a `PromptError` when it cannot be read or made), after
    checking that `wm` reads prompts at all."""
    if wm.prompt is None:
        raise ValueError(f"this world model of {wm.cfg.scene} reads no prompts (it has no prompt prefix); train one "
                         f"with `worldsim train prompt`, or use a shipped world that has one")
    slots = parse(language(wm.cfg.scene), prompt)
    wm.prompt.word_ids([prompt])  # words the scene's language has but this world never saw
    return slots


@torch.no_grad()
def start_from_prompt(wm: WorldModel, prompts: list[str], generator: torch.Generator | None = None,
                      temperature: float = 1.0, frames: bool = True, valid=None, tries: int = 50
                      ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Initial raw states [B, S] sampled from the prompts and their first frames' codes [B, h, w] (None
    without `frames`). Each prompt is checked (`check_prompt`) first. `valid`: a function of raw
    states [n, S] (numpy) -> bool [n], such as a scene's `start_is_valid`; rows it refuses are drawn
    again, up to `tries` times (a start that is still refused then is kept)."""
    for p in prompts:
        check_prompt(wm, p)
    dyn = wm.dynamics
    words = wm.prompt.word_ids(prompts)
    state = _bounded(wm, wm.prompt.sample_state(dyn, words, temperature, generator))
    for _ in range(tries if valid is not None else 0):
        bad = torch.from_numpy(~np.asarray(valid(state.double().cpu().numpy()), dtype=bool)).to(state.device)
        if not bool(bad.any()):
            break
        again = wm.prompt.sample_state(dyn, (words[0][bad], words[1][bad]), temperature, generator)
        state[bad] = _bounded(wm, again)
    if not frames:
        return state, None
    logits = wm.prompt.first_frame_logits(dyn, wm.normalize_state(state))
    g = dyn.cfg.grid
    return state, dyn.predict_codes(logits).view(len(prompts), g, g)


def _bounded(wm: WorldModel, state: torch.Tensor) -> torch.Tensor:
    """States held to the bounds every rollout state keeps (when the world has them)."""
    return state if wm.state_low is None else state.clamp(wm.state_low, wm.state_high)


@torch.no_grad()
def generate(wm: WorldModel, prompt: str, samples: int = 1, steps: int = 240, actions=None, seed: int = 0,
             temperature: float = 1.0, frame_temperature: float = 0.0, frames: bool = True, valid=None) -> Clips:
    """`samples` clips of `steps` steps from `prompt` (see the module docstring).

    Args:
        actions: [T, A] (the same for every clip) or [K, T, A]; None: zero actions.
        seed: seeds the initial states' sampling (and the frames', with frame_temperature > 0).
        temperature: of the initial state's sampling (0: each bin's most likely value).
        frames: False rolls out the physics alone (no first frame, no codes).
        valid: refuses starts the scene cannot have, drawn again (`start_from_prompt`); the scene's
            `start_is_valid` (`worldsim generate`, the env and `eval prompts` pass it).
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
    state, codes = start_from_prompt(wm, [prompt] * samples, gen, temperature, frames, valid)
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
    return Clips(prompt=prompt, slots=slots, states=torch.stack(all_states, 1),
                 tokens=None if codes is None else torch.stack(all_tokens, 1), actions=acts,
                 rewards=torch.stack(rewards, 1) if rewards else empty,
                 terminated=torch.stack(terms, 1) if terms else empty.bool(),
                 note="" if prompt.strip() else FREE_SAMPLING,
                 seconds={"prompt": t_prompt - t_start, "rollout": t_end - t_prompt})
