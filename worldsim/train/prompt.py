"""`worldsim train prompt`: give a trained world a prompt prefix, fitted on captioned episodes.

    worldsim data caption data/bounce-states && worldsim data caption data/bounce
    worldsim train prompt --checkpoint bounce --data data/bounce-states data/bounce --out runs/bounce-prompt

Each step draws captions of training episodes (`captions.json`, `worldsim.envs.captions`) with the
state each episode starts from, and minimises the cross-entropy of that state's bins given the
caption's words (`PromptHead.loss`); a share of them (`empty_share`) is drawn with an empty prompt,
which samples freely. Datasets with frames also give (state, frame codes) pairs for the first frame.
The backbone's weights are the world's and do not move (`PromptHead` alone trains), so every figure
of the world without a prompt holds bit for bit.

Validation samples initial states for held-out prompts (captions of the held-out episodes) and for
the held-out slot combinations (`worldsim.envs.captions.HELD_OUT`, never said together in training),
reads their slots back and logs the share that match (`val_adherence`, `val_combo_adherence`: the
slots a start alone decides, which leaves out what it hits first and whether it falls). The output
is the validated checkpoint with the best `val_adherence`, not the last.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from worldsim.core.config import check_positive
from worldsim.envs.captions import (
    ROLLOUT_SLOTS,
    caption,
    episode_slots,
    held_out_prompts,
    read_captions,
    start_guides,
    symmetries,
)
from worldsim.envs.loader import EpisodeDataset, split_episodes
from worldsim.envs.manifest import read_manifest
from worldsim.envs.registry import make_scene
from worldsim.model.generation import start_from_prompt
from worldsim.model.prompt import PromptConfig
from worldsim.model.prompt_language import language, phrase, words_of
from worldsim.model.world_model import WorldModel
from worldsim.train.parts import PartTrainConfig, _base, _check_data, _fit, _rebuilt
from worldsim.train.samplers import Frames
from worldsim.train.state import prepare_outputs


@dataclass(frozen=True)
class PromptTrainConfig(PartTrainConfig):
    steps: int = 3000
    batch_size: int = 256
    """captions per step"""
    frame_batch: int = 32
    """(state, first frame) pairs per step, from the datasets with frames (0: no first frame)"""
    lr: float = 2e-3
    val_fraction: float = 0.1
    """held-out share of each dataset's episodes"""
    save_every: int = 500
    bins: int = 64
    """bins per state dimension"""
    empty_share: float = 0.1
    """share of captions replaced by the empty prompt"""
    val_prompts: int = 256
    """held-out prompts sampled at each validation"""
    adapter_rank: int = 32
    """rank of the prompt tokens' own low-rank additions to each block (0: the blocks as they are)"""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("PromptTrainConfig", bins=self.bins, val_prompts=self.val_prompts)
        if self.frame_batch < 0 or not 0 <= self.empty_share < 1:
            raise ValueError(f"PromptTrainConfig needs frame_batch >= 0 and empty_share in [0, 1), got "
                             f"{self.frame_batch} and {self.empty_share}")


@dataclass
class Captioned:
    """Episodes' starts and slots, each symmetric copy of an episode (`worldsim.envs.captions.symmetries`)
    one more, and the captions files' captions of the episodes themselves."""

    texts: list[str]  # the captions files' captions
    said: list[dict[str, str]]
    starts: np.ndarray  # [n, S], each caption's episode's first state
    episode_slots: list[dict[str, str]]  # every episode and symmetric copy
    episode_starts: np.ndarray  # [copies, S]


def captioned(data: list[EpisodeDataset], scene: str, copies: bool = True) -> Captioned:
    """`data`'s episodes with their captions (each dataset's captions.json) and, with `copies`, the
    slots and starts of their symmetric copies, read off the copied states."""
    texts, said, starts, slots, first = [], [], [], [], []
    for d in data:
        by_id = {e["episode"]: e for e in read_captions(d.root)["episodes"]}
        sym = symmetries(scene, d.arrays["states"].shape[1]) if copies else []
        for i, ep_id in enumerate(d.episode_ids):
            rec = by_id.get(int(ep_id))
            if rec is None:
                raise ValueError(f"{d.root}/captions.json has no caption of episode {ep_id}; rewrite it with "
                                 f"`worldsim data caption {d.root}`")
            states = d.episode(i)["states"]
            slots.append(rec["slots"])
            first.append(states[0])
            for idx, sign in sym[1:]:
                copy = states[:, idx] * sign
                slots.append(episode_slots(scene, copy))
                first.append(copy[0])
            for c in rec["captions"]:
                texts.append(c["text"]), said.append(c["slots"]), starts.append(states[0])
    return Captioned(texts, said, np.asarray(starts), slots, np.asarray(first))


def start_slots(scene: str, state: np.ndarray) -> dict[str, str]:
    """The slots a start alone decides (what it hits first and whether it falls need the rollout)."""
    return {k: v for k, v in episode_slots(scene, state[None]).items() if k.split(".")[1] not in ROLLOUT_SLOTS}


def adherence(scene: str, said: list[dict[str, str]], states: np.ndarray) -> float:
    """The share of the start slots said (`start_slots`) that the starts [n, S] have."""
    hit = total = 0
    for want, s in zip(said, states):
        got = start_slots(scene, s)
        for k, v in want.items():
            if k.split(".")[1] in ROLLOUT_SLOTS:
                continue
            total += 1
            hit += got.get(k) == v
    return hit / max(total, 1)


def with_prompt(wm: WorldModel, starts: np.ndarray, bins: int, longest: int, adapter_rank: int = 0,
                seed: int = 0) -> WorldModel:
    """`wm` with a new prompt prefix (the scene's vocabulary; bins over `starts`' range widened by 1%
    each side; room for the `longest` caption's words and a quarter more), or `wm` itself when it has
    one already."""
    if wm.prompt is not None:
        return wm
    lo, hi = starts.min(0), starts.max(0)
    pad = np.maximum(hi - lo, 1e-3) * 0.01
    cfg = PromptConfig(vocabulary=language(wm.cfg.scene).vocabulary(), bins=bins, max_words=max(16, longest * 5 // 4),
                       subjects=tuple(names for names, _ in language(wm.cfg.scene).entities.values()),
                       adapter_rank=adapter_rank,
                       state_low=tuple(float(x) for x in lo - pad), state_high=tuple(float(x) for x in hi + pad))
    return _rebuilt(wm, seed, prompt=cfg)


def train_prompt(checkpoint: str | Path, data: list[str] | tuple[str, ...], out: str | Path,
                 cfg: PromptTrainConfig = PromptTrainConfig(), device: str = "auto", progress: bool = True,
                 force: bool = False, log_config: dict | None = None) -> dict[str, float]:
    """Give the world `checkpoint` a prompt prefix fitted on the captioned datasets `data` and write it
    to `out`; resumes from `out`.train."""
    if not data:
        raise ValueError("train prompt needs at least one captioned dataset (--data)")
    prepare_outputs(out, "world_model", force=force)  # before any work
    wm = _base(checkpoint, device)
    _check_data(wm, checkpoint, data)
    scene = wm.cfg.scene
    train_sets, val_sets = _open(data, cfg.val_fraction)
    train, val = captioned(train_sets, scene), captioned(val_sets, scene, copies=False)
    longest = _longest(scene, train.episode_slots[:2000], cfg.seed)
    wm = with_prompt(wm, train.episode_starts, cfg.bins, longest, cfg.adapter_rank, cfg.seed)
    head, dev = wm.prompt, wm.device
    framed_train = [d for d in train_sets if "frames" in d.arrays]
    framed_val = [d for d in val_sets if "frames" in d.arrays]
    frames = Frames(framed_train, wm) if cfg.frame_batch and framed_train else None
    val_frames = Frames(framed_val, wm) if frames is not None and framed_val else None
    starts = torch.from_numpy(train.episode_starts).float().to(dev)

    def train_loss(step: int) -> torch.Tensor:
        rng = np.random.default_rng([cfg.seed, step])
        # Fresh captions of random episodes and symmetric copies: new wording and a new choice of
        # what is said at every draw, so that no caption is seen twice.
        i = rng.integers(0, len(train.episode_slots), cfg.batch_size)
        texts = [caption(scene, train.episode_slots[j], rng)[0] if rng.random() >= cfg.empty_share else ""
                 for j in i]
        batch = {"words": head.word_ids(texts), "state": starts[torch.from_numpy(i).to(dev)]}
        if frames is not None:
            fb = frames.sample(cfg.frame_batch, rng)
            batch.update(frame_states=fb["states"], codes=fb["codes"])
        return head.loss(wm.dynamics, batch)[0]

    extra = {"base": str(checkpoint), "data": [str(d) for d in data], "starts": len(train.episode_starts),
             "longest_caption_words": longest}
    return _fit(wm, list(head.parameters()), cfg, out, train_loss, _validator(wm, train, val, val_frames, cfg),
                extra, "prompt prefix", progress, force, log_config, select="val_adherence")


def _open(data, val_fraction: float) -> tuple[list[EpisodeDataset], list[EpisodeDataset]]:
    """Each captioned dataset's training and held-out episodes (its last `val_fraction`)."""
    for d in data:
        read_captions(d)  # every dataset captioned, before any work
    train_sets, val_sets = [], []
    for d in data:
        framed = read_manifest(d).get("frames", True)
        tr, va = split_episodes(read_manifest(d)["episodes"], val_fraction)
        train_sets.append(EpisodeDataset(d, tr, frames=framed))
        val_sets.append(EpisodeDataset(d, va, frames=framed, verify=False))
    return train_sets, val_sets


def _longest(scene: str, slots: list[dict[str, str]], seed: int) -> int:
    """The most words a caption of these episodes takes: each one's every slot said."""
    wording = np.random.default_rng([seed, 98])
    return max(len(words_of(phrase(language(scene), {k: v for k, v in e.items() if v != "nothing"}, wording)))
               for e in slots)


def _validator(wm: WorldModel, train: Captioned, val: Captioned, val_frames, cfg: PromptTrainConfig):
    """`validate(batches)`: the held-out losses, and the adherence of starts sampled for held-out
    prompts and for prompts of held-out combinations (the same prompts at every validation)."""
    scene, head, dev = wm.cfg.scene, wm.prompt, wm.device
    rng = np.random.default_rng([cfg.seed, 99])
    pick = rng.choice(len(val.texts), min(cfg.val_prompts, len(val.texts)), replace=False)
    combos = held_out_prompts(scene, val.episode_slots + train.episode_slots, cfg.val_prompts, rng)
    texts = [val.texts[j] for j in pick]
    # Starts as users get them (consistent, valid), save the choice by rollout, which reads no start slot.
    guides = {**start_guides(make_scene(scene)), "check": None}

    @torch.no_grad()
    def validate(batches: int) -> dict[str, float]:
        b = {"words": head.word_ids(texts), "state": torch.from_numpy(val.starts[pick]).float().to(dev)}
        if val_frames is not None:
            fb = val_frames.sample(256, np.random.default_rng(1234))
            b.update(frame_states=fb["states"], codes=fb["codes"])
        logs = {f"val_{k}": float(v) for k, v in head.loss(wm.dynamics, b)[1].items()}
        gen = torch.Generator(device=dev).manual_seed(0)
        s, _ = start_from_prompt(wm, texts, gen, frames=False, **guides)
        logs["val_adherence"] = adherence(scene, [val.said[j] for j in pick], s.cpu().numpy())
        if combos:
            s, _ = start_from_prompt(wm, [t for t, _ in combos], gen, frames=False, **guides)
            logs["val_combo_adherence"] = adherence(scene, [c for _, c in combos], s.cpu().numpy())
        return logs

    return validate
