"""`worldsim data generate` and `worldsim data info`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path

from worldsim.envs.dataset import GenerateSpec, generate
from worldsim.envs.manifest import dataset_status

# `data generate`'s defaults are GenerateSpec's (but --workers: all cores here, one in the spec).
_SPEC = {f.name: f.default for f in dataclasses.fields(GenerateSpec)}


def _cmd_data_generate(args: argparse.Namespace) -> int:
    options = tuple(sorted({"n_balls": args.n_balls}.items())) if args.n_balls is not None else ()
    spec = GenerateSpec(scene=args.scene, out=args.out, episodes=args.episodes, policy=args.policy, seed=args.seed,
                        workers=args.workers, shard_size=args.shard_size, width=args.size, height=args.size,
                        max_steps=args.max_steps, scene_options=options, frames=not args.no_frames)
    m = generate(spec, progress_bar=not args.quiet, verify=args.verify)
    fps = m["_generated_frames"] / max(m["_elapsed_s"], 1e-9)
    unit = "frames" if m.get("frames", True) else "time steps (no frames rendered)"
    bad = m["_regenerated"]
    fixed = f"; regenerated {len(bad)} missing or corrupt shard(s): {', '.join(bad)}" if bad else ""
    print(f"{args.out}: {m['episodes']} episodes, {m['stats']['frames']} {unit} "
          f"({m['_generated_frames']} new, {fps:.0f}/s with {args.workers} worker(s){fixed})")
    return 0


def _cmd_data_info(args: argparse.Namespace) -> int:
    status = dataset_status(args.dir, verify=args.verify)
    m, bad = status["manifest"], status["bad_shards"]
    shards = m["shards"]
    info = {
        "dir": str(Path(args.dir)),
        "scene": m["scene"],
        "policy": m["policy"],
        "seed": m["seed"],
        "complete": status["complete"],  # False too when a listed shard is missing or corrupt
        "bad_shards": bad,
        "verified": status["verified"],  # SHA-256 checked (else sizes only)
        "episodes": m["episodes"],
        "episodes_written": sum(r["num_episodes"] for r in shards.values()),
        "shards": len(shards),
        "steps": sum(r["steps"] for r in shards.values()),
        "rendered": m.get("frames", True),
        "frames": sum(r["frames"] for r in shards.values()),
        "bytes": sum(r["bytes"] for r in shards.values()),
        "frame_size": [m["height"], m["width"]],
        "state_mean": m.get("stats", {}).get("state_mean"),
        "state_std": m.get("stats", {}).get("state_std"),
        "versions": m["versions"],
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return 1 if bad else 0
    for k, v in info.items():
        if k in ("state_mean", "state_std") and v is not None:
            v = "[" + ", ".join(f"{x:.4g}" for x in v) + "]"
        if k == "bad_shards":
            v = ", ".join(f"{name} ({why})" for name, why in v.items()) or "none"
        print(f"{k:<18}{v}")
    if bad:
        print("rerun `worldsim data generate` with the same arguments to regenerate the bad shards")
    return 1 if bad else 0


def _add_generate_parser(dsub: argparse._SubParsersAction) -> None:
    s = dsub.add_parser("generate", help="generate a dataset (resumable)",
                        description="Generate a dataset of MuJoCo episodes; rerun the same command to resume it, or to "
                                    "regenerate missing or corrupt shards.")
    s.add_argument("--scene", required=True, help="scene name (see `worldsim scenes`)")
    s.add_argument("--episodes", type=int, required=True, help="number of episodes")
    s.add_argument("--policy", default=_SPEC["policy"], help="random, smooth, scripted or mixed")
    s.add_argument("--seed", type=int, default=_SPEC["seed"], help="dataset seed")
    s.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="worker processes, one renderer each (default: all cores)")
    s.add_argument("--shard-size", type=int, default=_SPEC["shard_size"], help="episodes per shard")
    s.add_argument("--size", type=int, default=_SPEC["width"], help="frame size in pixels (a multiple of 16)")
    s.add_argument("--max-steps", type=int, default=_SPEC["max_steps"],
                   help="episode length cap (default: the scene's)")
    s.add_argument("--n-balls", type=int, default=None, help="bounce only: number of balls (1-3) (default: the "
                   "scene's)")
    s.add_argument("--no-frames", action="store_true",
                   help="render nothing: states, actions and the rest only (for --state-data)")
    s.add_argument("--out", required=True, help="dataset directory")
    s.add_argument("--verify", action="store_true",
                   help="check the SHA-256 of every finished shard, not only its size (reads the whole dataset)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=_cmd_data_generate)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register `data generate` and `data info`."""
    data = sub.add_parser("data", help="generate and inspect datasets", description="Dataset commands.")
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="COMMAND")
    _add_generate_parser(dsub)
    s = dsub.add_parser("info", help="counts, sizes and state statistics of a dataset",
                        description="Print counts, sizes and per-dimension state mean/std of a dataset, and "
                                    "which listed shards are missing or corrupt (exit status 1 if any).")
    s.add_argument("dir", help="dataset directory")
    s.add_argument("--verify", action="store_true",
                   help="check each shard's SHA-256, not only its size (reads the whole dataset)")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=_cmd_data_info)
