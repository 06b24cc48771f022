"""`worldsim generate`: a clip from a sentence, in a world with a prompt prefix.

    worldsim generate --scene bounce --prompt "The red ball starts high on the left, moving right." \\
        --seconds 10 --fps 24 --seed 0 --out clip.mp4 [--samples 4] [--side-by-side]

The world samples the initial state the prompt describes and renders its first frame, then rolls out
as every world does (`WorldModel.generate`). The clip shows the scene's own steps resampled to the
asked frame rate by the nearest step: frame k shows step round(k / fps / dt). Where the prompt says
what happens after the start (what a ball hits first), the start is the one of `--candidates` sampled
whose own rollout in the world shows it. `--samples K` tiles K
clips of the prompt side by side; `--side-by-side` puts under each the MuJoCo run from the same
generated initial state under the same actions (and their difference).
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import numpy as np

from worldsim.cli.common import DEVICE_HELP, FORCE_HELP, positive_float, positive_int
from worldsim.core.runtime import resolve_device
from worldsim.core.video import check_video_target, side_by_side, write_video
from worldsim.envs.captions import start_guides
from worldsim.envs.registry import make_scene
from worldsim.envs.world_batch import load_world_model
from worldsim.eval.prompt_eval import mujoco_from_starts
from worldsim.model.generation import FREE_SAMPLING
from worldsim.model.prompt_language import language

POLICIES = ("zero", "random")


def resample(n_steps: int, dt: float, seconds: float, fps: float) -> np.ndarray:
    """The step each frame of a `seconds`-long clip at `fps` shows: round(k / fps / dt), within n_steps + 1."""
    frames = int(math.floor(seconds * fps + 1e-9)) + 1
    return np.minimum(np.round(np.arange(frames) / fps / dt).astype(np.int64), n_steps)


def clip_actions(scene, policy: str, steps: int, samples: int, seed: int) -> np.ndarray:
    """[K, T, A] actions: zero, or uniform over the action space (seeded)."""
    space = scene.action_space
    if policy == "zero":
        return np.zeros((samples, steps, space.shape[0]), np.float32)
    rng = np.random.default_rng(seed)
    return rng.uniform(space.low, space.high, (samples, steps, space.shape[0])).astype(np.float32)


def tile(clips: np.ndarray) -> np.ndarray:
    """[K, T, H, W, 3] -> [T, H, K*W, 3]: the clips side by side."""
    return np.concatenate(list(clips), axis=2)


def _cmd_generate(args: argparse.Namespace) -> int:
    lang = language(args.scene)
    if args.vocabulary:
        print(f"{args.scene} prompts use the words: {' '.join(w for w in lang.vocabulary() if w != '.')}")
        print("they can say: " + "; ".join(f"{s} ({' / '.join(lang.values(s))})" for s in lang.slots))
        return 0
    if args.prompt is None or args.out is None:
        raise ValueError("worldsim generate needs --prompt and --out (or --vocabulary)")
    check_video_target(args.out, force=args.force, fps=args.fps, scale=args.scale)
    wm = load_world_model(args.scene, args.checkpoint, resolve_device(args.device))
    scene = make_scene(args.scene, width=wm.cfg.tokenizer.image_size, height=wm.cfg.tokenizer.image_size)
    steps = int(math.ceil(args.seconds / scene.dt - 1e-9))
    actions = clip_actions(scene, args.policy, steps, args.samples, args.seed)
    clips = wm.generate(args.prompt, samples=args.samples, steps=steps, actions=actions, seed=args.seed,
                        temperature=args.temperature, candidates=args.candidates, **start_guides(scene))
    if clips.note:
        print(f"worldsim: {clips.note}", file=sys.stderr)
    frames = wm.decode(clips.tokens).cpu().numpy()  # [K, T+1, H, W, 3]
    shown = resample(steps, scene.dt, args.seconds, args.fps)
    video = frames[:, shown]
    states0 = clips.states[:, 0].double().cpu().numpy()
    if args.side_by_side:
        _, real = mujoco_from_starts(scene, states0, actions, render=True)
        video = np.stack([side_by_side(v, r[shown]) for v, r in zip(video, real)])  # [K, F, H, 3W, 3]
        video = np.concatenate(list(video), axis=1)  # the samples one under another
    else:
        video = tile(video)
    write_video(args.out, video, fps=args.fps, scale=args.scale)
    info = {"out": str(args.out), "prompt": args.prompt, "slots": clips.slots, "samples": args.samples,
            "steps": steps, "dt": scene.dt, "fps": args.fps, "frames": len(shown),
            "resampling": f"frame k shows step round(k / {args.fps:g} / {scene.dt:.4g})",
            "seconds_prompt": round(clips.seconds["prompt"], 3), "seconds_rollout": round(clips.seconds["rollout"], 3),
            "initial_states": states0.round(4).tolist()}
    if args.json:
        print(json.dumps(info, indent=1))
    else:
        said = ", ".join(f"{k} {v}" for k, v in clips.slots.items()) or "nothing (" + FREE_SAMPLING + ")"
        print(f"wrote {args.out}: {args.samples} clip(s) of {args.seconds:g} s at {args.fps:g} fps ({steps} steps of "
              f"{scene.dt:.4g} s, {info['resampling']}); the prompt says: {said}; rollout "
              f"{clips.seconds['rollout']:.2f} s")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register `generate`."""
    s = sub.add_parser("generate", help="a video clip from a sentence (a world with a prompt prefix)",
                       description=__doc__.split("\n\n", 1)[1].replace("\\\n", ""),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--scene", required=True, help="scene name (see `worldsim scenes`)")
    s.add_argument("--prompt", help="what the clip starts as, e.g. \"The red ball starts high on the left.\" "
                                    "(empty: sampled freely)")
    s.add_argument("--out", help="the mp4 to write")
    s.add_argument("--checkpoint", default=None, help="world model directory (default: the scene's shipped world)")
    s.add_argument("--seconds", type=positive_float, default=10.0, help="clip length (default: 10)")
    s.add_argument("--fps", type=positive_float, default=24.0, help="frames per second of the clip (default: 24)")
    s.add_argument("--seed", type=int, default=0, help="seeds the initial state's sampling and random actions")
    s.add_argument("--samples", type=positive_int, default=1, help="clips of the prompt, side by side (default: 1)")
    s.add_argument("--temperature", type=float, default=1.0,
                   help="of the initial state's sampling (0: the most likely bins) (default: 1)")
    s.add_argument("--candidates", type=positive_int, default=16,
                   help="where the prompt says what a ball hits first: starts sampled, of which the one whose "
                        "rollout in the world shows it is kept (default: 16; 1: the first sampled)")
    s.add_argument("--policy", choices=POLICIES, default="zero", help="the actions of the clip (default: zero)")
    s.add_argument("--side-by-side", action="store_true",
                   help="under each clip, MuJoCo from the same generated initial state and actions, and the difference")
    s.add_argument("--scale", type=positive_int, default=4, help="pixel repeat of the video (default: 4)")
    s.add_argument("--vocabulary", action="store_true", help="list the words and slots the scene's prompts use")
    s.add_argument("--device", default="auto", help=DEVICE_HELP)
    s.add_argument("--json", action="store_true", help="print what was written as JSON")
    s.add_argument("--force", action="store_true", help=FORCE_HELP)
    s.set_defaults(func=_cmd_generate)
