"""`worldsim eval prompts`: how well a world follows prompts, and how sound its generated clips are.

    worldsim eval prompts --scene bounce --data data/bounce-states --out eval/bounce-prompts

- **Slot adherence.** Prompts are the captions of the dataset's held-out episodes (its last
  `val_fraction`, which `worldsim train prompt` holds out) and prompts saying a held-out combination
  of slots (`worldsim.envs.captions.HELD_OUT`, never said together in training). Each is generated
  (its start sampled and made consistent, a start the scene cannot have drawn again, one whose rollout
  shows what a ball hits first chosen among `candidates`, then the world's rollout under zero actions
  for `seconds`), the clip's own predicted states are read back into slots (`episode_slots`) and
  compared with what the prompt said.
  The same is reported for MuJoCo run from the generated start (its first `physics_steps` steps):
  where MuJoCo also misses a slot, the start was wrong; where only the world misses it, its rollout was.
- **Physics of generated clips.** MuJoCo from each generated initial state under the same actions is
  the truth for the first `physics_steps` steps; the clip's states are scored as the open-loop harness
  scores (state error normalised by the data's std at horizons, valid horizon). Beside it, the world's
  own open-loop figures from MuJoCo's starts (`reset(seed)`), the same number of them, in the same run.
  For bounce, also how soon and how often the clips' states are ones the scene cannot have (balls
  outside the box or overlapping: `start_is_valid` on every step), beside the same from MuJoCo's starts.
- **Abnormal clips** (bounce): `clips` generated 10-second clips with frames, decoded, checked by the
  rules of `worldsim.eval.clip_rules`; beside it, for `reference_clips` of the same starts, the world's
  own rollout from MuJoCo's first frame of that start (what the prompt's first frame changes), the
  same rollout's states drawn exactly by MuJoCo's renderer (what perfect frames of the world's own
  physics would score), and MuJoCo's own frames through the tokenizer (the rate a perfect world scores).
- **Speed**: the wall time of one clip (`seconds` of steps with frames, decoded) at batch 1, with
  the torch threads the run has.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from worldsim.core.config import ConfigBase
from worldsim.envs.captions import (
    ROLLOUT_SLOTS,
    episode_slots,
    held_out_prompts,
    read_captions,
    rollout_check,
    start_guides,
)
from worldsim.envs.loader import split_episodes
from worldsim.envs.manifest import read_manifest
from worldsim.envs.registry import make_scene
from worldsim.eval.clip_rules import RULES, PixelMap, abnormal
from worldsim.eval.metrics import state_nrmse, valid_horizon
from worldsim.model.generation import rollout_states, start_from_prompt

HORIZONS = (1, 10, 50)


@dataclass(frozen=True)
class PromptEvalConfig(ConfigBase):
    scene: str = "bounce"
    """scene name"""
    data: str = ""
    """captioned dataset whose held-out episodes' captions are the prompts"""
    prompts: int = 100
    """held-out prompts, and as many prompts of held-out combinations"""
    clips: int = 100
    """generated clips with frames checked for abnormal balls (bounce)"""
    reference_clips: int = 20
    """clips of MuJoCo's frames through the tokenizer checked by the same rules"""
    seconds: float = 10.0
    """length of each clip"""
    physics_steps: int = 60
    """steps of MuJoCo run from each start, against which the clip's physics is scored (and read for
    MuJoCo's own adherence)"""
    val_fraction: float = 0.1
    """the held-out share of the dataset's episodes (as `train prompt` held out)"""
    batch: int = 50
    """clips generated at once"""
    candidates: int = 16
    """starts sampled for a prompt that says what happens after the start, of which generation keeps the
    one whose rollout in the world shows it (`rollout_check`; 1: the first sampled)"""
    seed: int = 0
    """seeds the prompts' choice and the starts' sampling"""

    def __post_init__(self) -> None:
        for name in ("prompts", "clips", "batch", "physics_steps", "candidates"):
            if getattr(self, name) < 1:
                raise ValueError(f"PromptEvalConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.reference_clips < 0 or not self.seconds > 0 or not 0 < self.val_fraction < 1:
            raise ValueError("PromptEvalConfig needs reference_clips >= 0, seconds > 0 and val_fraction in (0, 1)")


def _rollout(wm, states0: torch.Tensor, steps: int, frames: torch.Tensor | None = None
             ) -> tuple[np.ndarray, torch.Tensor | None]:
    """The world's rollout from raw states [B, S] (and first-frame codes [B, h, w]) under zero actions:
    states [B, T+1, S] and, with frames, codes [B, T+1, h, w]."""
    zero = torch.zeros(len(states0), wm.cfg.dynamics.action_dim, device=wm.device)
    if frames is None:
        return rollout_states(wm, states0, zero[:, None].expand(-1, steps, -1)).double().cpu().numpy(), None
    handle = wm.start(frames[:, None], states0[:, None])
    states, codes = [states0], [frames]
    for _ in range(steps):
        tok, st, _, _ = wm.step(handle, zero)
        states.append(st), codes.append(tok)
    return torch.stack(states, 1).double().cpu().numpy(), torch.stack(codes, 1)


def mujoco_from_starts(scene, states0: np.ndarray, actions: np.ndarray, render: bool = False
                       ) -> tuple[np.ndarray, np.ndarray | None]:
    """MuJoCo from each state [B, S] (`Scene.physics_from_state`) under actions [B, T, A]: states
    [B, T+1, S] and, with `render`, frames [B, T+1, H, W, 3]."""
    out, frames = [], []
    for s0, acts in zip(states0, actions):
        st, _ = scene.reset(seed=0, physics_state=scene.physics_from_state(s0))
        s, f = [st], [scene.render()] if render else []
        for a in acts:
            s.append(scene.step(a).state)
            if render:
                f.append(scene.render())
        out.append(np.stack(s)), frames.append(np.stack(f) if render else None)
    return np.stack(out), np.stack(frames) if render else None


def _mujoco(scene, states0: np.ndarray, steps: int, render: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """`mujoco_from_starts` under zero actions for `steps` steps."""
    return mujoco_from_starts(scene, states0, np.zeros((len(states0), steps, *scene.action_space.shape)), render)


def _adherence(scene: str, said: list[dict[str, str]], states: np.ndarray) -> dict[str, float]:
    """Share of the said slots that the states [n, T+1, S] have: all, the start's, the rollout's, by slot."""
    hits: dict[str, list[bool]] = {}
    for want, s in zip(said, states):
        got = episode_slots(scene, s)
        for k, v in want.items():
            hits.setdefault(k.split(".")[1], []).append(got.get(k) == v)
    flat = [h for v in hits.values() for h in v]
    start = [h for k, v in hits.items() if k not in ROLLOUT_SLOTS for h in v]
    rollout = [h for k, v in hits.items() if k in ROLLOUT_SLOTS for h in v]
    mean = lambda xs: float(np.mean(xs)) if xs else None  # noqa: E731
    return {"all": mean(flat), "start": mean(start), "rollout": mean(rollout), "said": len(flat),
            "by_slot": {k: mean(v) for k, v in sorted(hits.items())}}


def _impossible(scene, states: np.ndarray) -> dict[str, float]:
    """How soon and how often a rollout's states [n, T+1, S] are ones the scene cannot have
    (`start_is_valid`: bounce's balls outside the box or overlapping): the share of all steps, and the
    median first such step (T+1 where none is)."""
    bad = ~scene.start_is_valid(states.reshape(-1, states.shape[-1])).reshape(states.shape[:2])
    first = np.where(bad.any(1), bad.argmax(1), bad.shape[1])
    return {"share_of_steps": float(bad.mean()), "median_first_step": float(np.median(first))}


def _physics(pred: np.ndarray, true: np.ndarray, std: np.ndarray) -> dict[str, float]:
    err = state_nrmse(pred[:, 1:], true[:, 1:], std)  # [B, T]
    out = {f"nrmse_h{h}": float(err[:, h - 1].mean()) for h in HORIZONS if h <= err.shape[1]}
    out["valid_horizon"] = float(np.median(valid_horizon(err)))
    return out


def evaluate_prompts(wm, cfg: PromptEvalConfig, progress: bool = False) -> dict:
    """The report of the module docstring."""
    if wm.prompt is None:
        raise ValueError("this world reads no prompts (it has no prompt prefix): train one with "
                         "`worldsim train prompt`")
    t_start = time.perf_counter()
    scene_name = cfg.scene
    scene = make_scene(scene_name, width=wm.cfg.tokenizer.image_size, height=wm.cfg.tokenizer.image_size)
    steps = int(np.ceil(cfg.seconds / scene.dt - 1e-9))
    caps = read_captions(cfg.data)
    _, val_ep = split_episodes(read_manifest(cfg.data)["episodes"], cfg.val_fraction)
    by_id = {e["episode"]: e for e in caps["episodes"]}
    rng = np.random.default_rng(cfg.seed)
    val = [by_id[int(e)] for e in val_ep]
    pick = rng.choice(len(val), min(cfg.prompts, len(val)), replace=False)
    held = [val[i]["captions"][int(rng.integers(len(val[i]["captions"])))] for i in pick]
    sets = {"held_out_prompts": [(c["text"], c["slots"]) for c in held],
            "held_out_combinations": held_out_prompts(scene_name, [e["slots"] for e in caps["episodes"]],
                                                      cfg.prompts, rng)}
    gen = torch.Generator(device=wm.device).manual_seed(cfg.seed)
    std = np.asarray(read_manifest(cfg.data)["stats"]["state_std"], np.float64)
    report: dict = {"kind": "eval-prompts", "scene": scene_name, "config": cfg.to_dict(), "steps": steps,
                    "dt": scene.dt, "threads": torch.get_num_threads()}
    starts: dict[str, np.ndarray] = {}
    for name, items in sets.items():
        report[name], starts[name] = _prompt_set(wm, scene, items, steps, cfg, gen, std)
    # The world's own open-loop figures from MuJoCo's starts, as many of them.
    n = len(starts["held_out_prompts"])
    real0 = np.stack([scene.reset(seed=10_000 + i)[0] for i in range(n)])
    horizon = min(steps, cfg.physics_steps)
    truth = _mujoco(scene, real0, horizon)[0]
    length = steps if scene.has_balls else horizon  # the whole clip where its impossible states are counted
    own = np.concatenate([_rollout(wm, torch.from_numpy(real0[i : i + cfg.batch]).float().to(wm.device), length)[0]
                          for i in range(0, n, cfg.batch)])
    report["physics_from_mujoco_starts"] = _physics(own[:, : horizon + 1], truth, std)
    if scene.has_balls:
        report["impossible_states_from_mujoco_starts"] = _impossible(scene, own)
        report.update(_abnormal_report(wm, scene, sets["held_out_prompts"], steps, cfg, gen))
    report["clip_seconds"] = _clip_seconds(wm, sets["held_out_prompts"][0][0], steps, scene, cfg.candidates)
    report["wall_seconds"] = time.perf_counter() - t_start
    return report


def _prompt_set(wm, scene, items: list[tuple[str, dict[str, str]]], steps: int, cfg: PromptEvalConfig,
                gen: torch.Generator, std: np.ndarray) -> tuple[dict, np.ndarray]:
    """One set of prompts (text, slots said) generated and scored: its report entry, and its starts [n, S]."""
    said, guides = [s for _, s in items], start_guides(scene)
    world, truth, s0, first = [], [], [], []
    for i in range(0, len(items), cfg.batch):
        texts = [t for t, _ in items[i : i + cfg.batch]]
        st, _ = start_from_prompt(wm, texts, gen, frames=False, candidates=cfg.candidates, **guides)
        world.append(_rollout(wm, st, steps)[0])
        s0.append(st.double().cpu().numpy())
        truth.append(_mujoco(scene, s0[-1], min(steps, cfg.physics_steps))[0])
        if guides["check"] is not None and cfg.candidates > 1:  # the sampler alone, for comparison
            st, _ = start_from_prompt(wm, texts, gen, frames=False, **{**guides, "check": None})
            first.append(_rollout(wm, st, steps)[0])
    world, truth = np.concatenate(world), np.concatenate(truth)
    entry = {"prompts": len(items), "examples": [t for t, _ in items[:5]],
             "adherence": _adherence(scene.name, said, world),
             "adherence_mujoco_from_start": _adherence(scene.name, said, truth),
             "physics": _physics(world[:, : truth.shape[1]], truth, std)}
    if first:
        entry["adherence_first_sample"] = _adherence(scene.name, said, np.concatenate(first))
    if scene.has_balls:
        entry["impossible_states"] = _impossible(scene, world)
    return entry, np.concatenate(s0)


def _abnormal_report(wm, scene, items, steps: int, cfg: PromptEvalConfig, gen: torch.Generator) -> dict:
    """Abnormal-clip rates of generated clips, of the world's rollouts from MuJoCo's first frames of the
    same starts and of their states drawn exactly, and of MuJoCo's frames through the tokenizer."""
    pixels, n_balls = PixelMap.for_scene(scene), scene.n_balls
    texts = [items[i % len(items)][0] for i in range(cfg.clips)]
    flags, refs, ref_starts = [], [], []
    for i in range(0, len(texts), cfg.batch):
        st, codes = start_from_prompt(wm, texts[i : i + cfg.batch], gen, candidates=cfg.candidates,
                                      **start_guides(scene))
        _, tokens = _rollout(wm, st, steps, codes)
        for clip in tokens:
            flags.append(abnormal(wm.decode(clip[None])[0].cpu().numpy(), n_balls, pixels))
        ref_starts.append(st.double().cpu().numpy())
    own, drawn = [], []  # the world's own clips from MuJoCo's starts and first frames; its states drawn
    for s0 in np.concatenate(ref_starts)[: cfg.reference_clips]:
        _, frames = _mujoco(scene, s0[None], steps, render=True)
        codes = wm.encode(torch.from_numpy(frames[0])[None].to(wm.device))  # [1, T+1, h, w]
        refs.append(abnormal(wm.decode(codes)[0].cpu().numpy(), n_balls, pixels))
        states, tokens = _rollout(wm, torch.from_numpy(s0[None]).float().to(wm.device), steps, codes[:, 0])
        own.append(abnormal(wm.decode(tokens)[0].cpu().numpy(), n_balls, pixels))
        drawn.append(abnormal(_drawn(scene, states[0]), n_balls, pixels))
    return {"abnormal_clips": table(flags), "abnormal_clips_world_from_mujoco_frame": table(own),
            "abnormal_clips_world_states_drawn_exactly": table(drawn),
            "abnormal_clips_mujoco_through_tokenizer": table(refs)}


def _drawn(scene, states: np.ndarray) -> np.ndarray:
    """MuJoCo's renderer at each of a rollout's states [T+1, S], nothing simulated: the frames [T+1, H, W, 3]
    a world whose frames drew its own physics exactly would give."""
    frames = []
    for s in states:
        scene.set_physics_state(scene.physics_from_state(s))
        frames.append(scene.render())
    return np.stack(frames)


def _rate(flags: list[dict[str, bool]], key: str) -> float | None:
    return float(np.mean([f[key] for f in flags])) if flags else None


def table(flags: list[dict[str, bool]]) -> dict:
    """The share of clips that break any rule, and each rule."""
    return {"clips": len(flags), "rate": _rate(flags, "abnormal"), "by_rule": {r: _rate(flags, r) for r in RULES}}


def _clip_seconds(wm, prompt: str, steps: int, scene, candidates: int) -> float:
    """Wall seconds of one clip at batch 1: the start, `steps` steps with frames, and decoding every frame."""
    t0 = time.perf_counter()
    clips = wm.generate(prompt, samples=1, steps=steps, seed=0, candidates=candidates, **start_guides(scene))
    wm.decode(clips.tokens)
    return time.perf_counter() - t0


def prompt_markdown(report: dict) -> str:
    """The report as markdown tables."""
    pct = lambda v: "-" if v is None else f"{100 * v:.1f}%"  # noqa: E731
    lines = [f"# Prompt evaluation: {report['scene']}", "",
             f"{report['steps']} steps of {report['dt']:.4g} s per clip, zero actions; "
             f"{report['threads']} torch thread(s)" + (
                 f"; a prompt saying what happens after the start keeps the best of "
                 f"{report['config']['candidates']} sampled starts by the world's own rollout."
                 if rollout_check(report["scene"]) is not None else "."), "",
             "| prompts | n | slots said | adherence (all) | start slots | rollout slots "
             "| MuJoCo from the start (all) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name in ("held_out_prompts", "held_out_combinations"):
        r = report[name]
        a, m = r["adherence"], r["adherence_mujoco_from_start"]
        lines.append(f"| {name.replace('_', ' ')} | {r['prompts']} | {a['said']} | {pct(a['all'])} | "
                     f"{pct(a['start'])} | {pct(a['rollout'])} | {pct(m['all'])} |")
        if "adherence_first_sample" in r:
            f = r["adherence_first_sample"]
            lines.append(f"| {name.replace('_', ' ')}, the first start sampled (no choice by rollout) | "
                         f"{r['prompts']} | {f['said']} | {pct(f['all'])} | {pct(f['start'])} | "
                         f"{pct(f['rollout'])} | - |")
    lines += ["", "| adherence by slot | " + " | ".join(report["held_out_prompts"]["adherence"]["by_slot"]) + " |",
              "|---|" + "---:|" * len(report["held_out_prompts"]["adherence"]["by_slot"])]
    for name in ("held_out_prompts", "held_out_combinations"):
        by = report[name]["adherence"]["by_slot"]
        lines.append(f"| {name.replace('_', ' ')} | " + " | ".join(
            pct(by.get(k)) for k in report["held_out_prompts"]["adherence"]["by_slot"]) + " |")
    keys = [k for k in report["physics_from_mujoco_starts"]]
    lines += ["", "| physics (against MuJoCo from the same start) | " + " | ".join(keys) + " |",
              "|---|" + "---:|" * len(keys)]
    for label, phys in (("generated starts (held-out prompts)", report["held_out_prompts"]["physics"]),
                        ("generated starts (held-out combinations)", report["held_out_combinations"]["physics"]),
                        ("MuJoCo's own starts (the world's open loop)", report["physics_from_mujoco_starts"])):
        lines.append(f"| {label} | " + " | ".join(f"{phys[k]:.4g}" for k in keys) + " |")
    if "impossible_states_from_mujoco_starts" in report:
        lines += ["", "| states the scene cannot have (balls outside the box or overlapping) | share of steps "
                      "| median first step |", "|---|---:|---:|"]
        for label, r in (("generated starts (held-out prompts)", report["held_out_prompts"]["impossible_states"]),
                         ("MuJoCo's own starts", report["impossible_states_from_mujoco_starts"])):
            lines.append(f"| {label} | {pct(r['share_of_steps'])} | {r['median_first_step']:.0f} |")
    if "abnormal_clips" in report:
        lines += ["", "| abnormal clips | clips | rate | " + " | ".join(RULES) + " |",
                  "|---|---:|---:|" + "---:|" * len(RULES)]
        for label, key in (("generated from prompts", "abnormal_clips"),
                           ("the world from MuJoCo's first frame of the same starts",
                            "abnormal_clips_world_from_mujoco_frame"),
                           ("the same rollouts' states drawn exactly (MuJoCo's renderer, no tokenizer)",
                            "abnormal_clips_world_states_drawn_exactly"),
                           ("MuJoCo frames through the tokenizer", "abnormal_clips_mujoco_through_tokenizer")):
            r = report[key]
            lines.append(f"| {label} | {r['clips']} | {pct(r['rate'])} | "
                         + " | ".join(pct(r["by_rule"][k]) for k in RULES) + " |")
    lines += ["", f"One {report['steps']}-step clip with frames, decoded, at batch 1: {report['clip_seconds']:.2f} s.",
              "", "Examples of held-out prompts:", ""]
    lines += [f"- {t}" for t in report["held_out_prompts"]["examples"]]
    return "\n".join(lines) + "\n"
