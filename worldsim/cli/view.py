"""`worldsim scenes`, `info`, `render`, `rollout` and `export`: looking at scenes and checkpoints."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import platform
from pathlib import Path
from typing import Any

import gymnasium
import mujoco
import numpy as np
import torch

from worldsim import envs
from worldsim._version import __version__
from worldsim.cli.common import (
    DEVICE_HELP,
    FORCE_FILE_HELP,
    FORCE_HELP,
    PRECISION_HELP,
    positive_float,
    positive_int,
    world_frame_size,
)
from worldsim.core.checkpoint import load_checkpoint
from worldsim.core.precision import PRECISIONS
from worldsim.core.registry import PACKAGE_REF, SHIPPED, resolve_checkpoint
from worldsim.core.runtime import resolve_device
from worldsim.core.video import check_video_target, write_video
from worldsim.envs import SCENE_DESCRIPTIONS, list_scenes
from worldsim.envs.policies import make_policy
from worldsim.eval.rollout_video import POLICIES, paired_rollout, write_rollout_video
from worldsim.model.stats import world_model_info
from worldsim.model.world_model import WorldModel
from worldsim.train.export import export_world_model


def _triton_version() -> str | None:
    """Triton's installed version, read from its metadata: importing it costs seconds and a CPU run never needs it."""
    try:
        return importlib.metadata.version("triton")
    except importlib.metadata.PackageNotFoundError:  # an optional dependency, absent off Linux
        return None


def _cmd_scenes(args: argparse.Namespace) -> int:
    rows = []
    for name in list_scenes():
        with envs.make_scene(name) as s:
            rows.append({"scene": name, "dt": s.dt, "fps": round(1 / s.dt, 3), "max_episode_steps": s.max_episode_steps,
                         "state_dim": s.state_dim, "action_dim": int(s.action_space.shape[0]),
                         "energy_conserved": s.energy_conserved, "description": SCENE_DESCRIPTIONS[name],
                         "world": SHIPPED.get("world_model", {}).get(name)})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'scene':<22}{'dt (s)':>9}{'steps':>7}{'state':>7}{'action':>8}  {'world':<16}description")
    for r in rows:
        print(f"{r['scene']:<22}{r['dt']:>9.4f}{r['max_episode_steps']:>7}{r['state_dim']:>7}{r['action_dim']:>8}  "
              f"{r['world'] or 'no world':<16}{r['description']}")
    print("world: the world model shipped for the scene (`worldsim models` lists them all, with the baselines)")
    return 0


def _info_target(name: str) -> tuple[Path, str | None]:
    """The checkpoint `worldsim info NAME` describes, and the scene when NAME is one: its shipped world
    model, or its shipped tokenizer for a scene that ships no world model (Pusher-v5). "worldsim:NAME"
    (the `ref` that `worldsim models --json` prints) is the shipped weights' folder NAME."""
    if name.startswith(PACKAGE_REF):
        return resolve_checkpoint(name, "world_model"), None
    if name not in list_scenes():
        return Path(name), None
    if name not in SHIPPED.get("world_model", {}) and name in SHIPPED.get("tokenizer", {}):
        return resolve_checkpoint(name, "tokenizer"), name
    return resolve_checkpoint(name, "world_model"), name


def _checkpoint_info(name: str) -> dict[str, Any]:
    path, scene = _info_target(name)
    head: dict[str, Any] = {"scene": scene} if scene else {}
    ckpt = load_checkpoint(path)
    head.update(checkpoint=str(path), kind=ckpt.kind)
    if ckpt.kind == "world_model":
        return {**head, **world_model_info(WorldModel.from_pretrained(path))}
    return {**head, "worldsim_version": ckpt.worldsim_version,
            "params_total": int(sum(t.numel() for t in ckpt.tensors.values())), "tensors": len(ckpt.tensors),
            "config": ckpt.config}


def _cmd_info(args: argparse.Namespace) -> int:
    if args.checkpoint is not None:
        info = _checkpoint_info(args.checkpoint)
    else:
        info = {"worldsim": __version__, "python": platform.python_version(), "torch": torch.__version__,
                "mujoco": mujoco.__version__, "gymnasium": gymnasium.__version__,
                "device_auto": str(resolve_device("auto")), "cuda_available": torch.cuda.is_available(),
                "triton": _triton_version()}
    if args.json:
        print(json.dumps(info, indent=2, default=str))
    else:
        for k, v in info.items():
            print(f"{k:<20}{json.dumps(v, default=str) if isinstance(v, (dict, list)) else v}")
    return 0


def _cmd_render(args: argparse.Namespace) -> int:
    out = check_video_target(args.out, force=args.force, scale=args.scale, frame_size=(args.size, args.size))
    # Looked up on the module when run, so a test (or a caller) can stand in for it.
    scene = envs.make_scene(args.scene, args.size, args.size)
    policy = make_policy(args.policy)
    try:
        scene.reset(seed=args.seed)
        policy.reset(scene, args.seed)
        frames, ret = [scene.render()], 0.0
        steps = args.steps or scene.max_episode_steps
        for _ in range(steps):
            r = scene.step(policy.act(scene))
            frames.append(scene.render())
            ret += r.reward
            if r.terminated:
                break
    finally:
        scene.close()
    write_video(out, np.stack(frames), fps=1 / scene.dt, scale=args.scale)
    print(f"wrote {out}: {len(frames)} frames of {args.scene} at {1 / scene.dt:.1f} fps, "
          f"policy {args.policy}, seed {args.seed}, task return {ret:.2f}")
    return 0


def _cmd_rollout(args: argparse.Namespace) -> int:
    if args.episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {args.episodes}")
    side = world_frame_size(args.scene, args.checkpoint)
    check_video_target(args.out, force=args.force, fps=args.fps, scale=args.scale,
                       frame_size=None if side is None else (side, side * (3 if args.side_by_side else 1)))
    rolls = [paired_rollout(args.scene, args.steps, args.policy, args.seed + i, args.checkpoint, args.device,
                            ground_truth=args.side_by_side, temperature=args.temperature, progress=not args.quiet,
                            precision=args.precision)
             for i in range(args.episodes)]
    out = write_rollout_video(args.out, rolls, fps=args.fps, scale=args.scale, side_by_side=args.side_by_side)
    msg = f"wrote {out}: {sum(len(r.model_frames) for r in rolls)} frames of {args.scene} (world model"
    msg += " | MuJoCo | difference)" if args.side_by_side else ")"
    seeds = f"seed {args.seed}" if args.episodes == 1 else f"seeds {args.seed}..{args.seed + args.episodes - 1}"
    print(f"{msg}, policy {args.policy}, {seeds}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    r = export_world_model(args.checkpoint, args.out, fp16=not args.fp32, tokenizer_ref=args.tokenizer_ref,
                           static_from=args.static_from, tokenizer=args.tokenizer, force=args.force,
                           eval_report=args.eval_report)
    print(f"wrote {args.out} ({r['bytes'] / 2**20:.1f} MiB); open-loop check against the source over 50 steps: "
          f"{100 * r['token_agreement']:.2f}% identical tokens, max state difference "
          f"{r['max_state_diff_std']:.2e} dataset std")
    return 0


def _add_inspect_parsers(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("scenes", help="list the MuJoCo scenes", description="List the registered MuJoCo scenes and "
                                                                            "the world model shipped for each.")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=_cmd_scenes)

    s = sub.add_parser("info", help="versions and devices, or a checkpoint's or a scene's shipped world",
                       description="Print versions and the auto device; or describe a checkpoint directory, or "
                                   "the shipped world model of a scene (its shipped tokenizer where no world "
                                   "model is shipped).")
    s.add_argument("checkpoint", nargs="?", metavar="CHECKPOINT_OR_SCENE",
                   help="a checkpoint directory, worldsim:NAME for shipped weights (the refs `worldsim models "
                        "--json` prints), or a scene name (see `worldsim scenes`; write ./NAME for a folder of "
                        "that name) (default: none, versions and devices)")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=_cmd_info)

    s = sub.add_parser("render", help="render one real MuJoCo episode to mp4",
                       description="Roll out one seeded episode of a scene in MuJoCo and write it to an mp4.")
    s.add_argument("--scene", default="Reacher-v5", help="scene name (see `worldsim scenes`)")
    s.add_argument("--policy", default="scripted", help="random, smooth, scripted or mixed")
    s.add_argument("--seed", type=int, default=0, help="episode seed")
    s.add_argument("--steps", type=int, default=None, help="steps (default: the scene's episode length)")
    s.add_argument("--size", type=int, default=64, help="frame size in pixels (a multiple of 16)")
    s.add_argument("--scale", type=positive_int, default=4, help="repeat each pixel this many times in the video")
    s.add_argument("--out", required=True, help="output .mp4 path (an existing file is refused without --force)")
    s.add_argument("--force", action="store_true", help=FORCE_FILE_HELP)
    s.set_defaults(func=_cmd_render)


def _add_rollout_parsers(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("rollout", help="roll the world model out to mp4 (beside MuJoCo with --side-by-side)",
                       description="Roll the world model out from a real initial state under a behaviour policy "
                                   "and write the frames to an mp4; with --side-by-side, model | MuJoCo | "
                                   "difference, same initial state and same actions.")
    s.add_argument("--scene", default="Reacher-v5", help="scene name (see `worldsim scenes`)")
    s.add_argument("--checkpoint", default=None, help="world-model checkpoint (default: the shipped one)")
    s.add_argument("--steps", type=int, default=240, help="steps to roll out")
    s.add_argument("--fps", type=positive_float, default=None, help="video frame rate (default: the scene's, 1 / dt)")
    s.add_argument("--policy", default="smooth", choices=POLICIES,
                   help="behaviour policy acting in MuJoCo (scripted: the scene's controller with its noise)")
    s.add_argument("--seed", type=int, default=0, help="episode seed (the real env's reset seed)")
    s.add_argument("--episodes", type=int, default=1, help="episodes one after another, seeds SEED, SEED + 1, ...")
    s.add_argument("--temperature", type=float, default=0.0, help="token sampling temperature (0 = argmax)")
    s.add_argument("--scale", type=positive_int, default=4, help="repeat each pixel this many times in the video")
    s.add_argument("--device", default="auto", help=DEVICE_HELP)
    s.add_argument("--precision", default="auto", choices=PRECISIONS, help=PRECISION_HELP)
    s.add_argument("--side-by-side", action="store_true", help="model | MuJoCo | |difference|")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.add_argument("--out", required=True, help="output .mp4 path (an existing file is refused without --force)")
    s.add_argument("--force", action="store_true", help=FORCE_FILE_HELP)
    s.set_defaults(func=_cmd_rollout)

    s = sub.add_parser("export", help="write a world model for shipping (fp16, shared tokenizer)",
                       description="Copy a world-model checkpoint for shipping, optionally with fp16 weights and "
                                   "the tokenizer referenced instead of copied, and print what fp16 changes in "
                                   "open-loop rollouts.")
    s.add_argument("checkpoint", help="world-model checkpoint directory")
    s.add_argument("--out", required=True, help="output checkpoint directory")
    s.add_argument("--fp32", action="store_true", help="keep fp32 weights (default: fp16)")
    s.add_argument("--force", action="store_true", help=FORCE_HELP)
    s.add_argument("--tokenizer-ref", default=None,
                   help="reference the tokenizer instead of copying its weights: worldsim:NAME for shipped "
                        "weights (e.g. worldsim:tokenizer-reacher), or a tokenizer checkpoint folder inside --out "
                        "(default: none, copy it)")
    s.add_argument("--static-from", default=None,
                   help="dataset directory: hold the state dimensions constant within its episodes fixed, and "
                        "bound rollout states to its range widened by half (for checkpoints that predate both) "
                        "(default: none)")
    s.add_argument("--tokenizer", default=None,
                   help="swap in this tokenizer (a checkpoint directory or worldsim:NAME), which must have the "
                        "world's encoder: a new decoder for the same codes (default: none, keep the world's)")
    s.add_argument("--eval-report", default=None,
                   help="a `worldsim eval --out` directory that scored this very checkpoint (its report records "
                        "the weights' SHA-256; another world's report is refused): its PCS and valid horizon go "
                        "into the config, where `worldsim models` shows them (default: none)")
    s.set_defaults(func=_cmd_export)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register scenes, info, render, rollout and export."""
    _add_inspect_parsers(sub)
    _add_rollout_parsers(sub)
