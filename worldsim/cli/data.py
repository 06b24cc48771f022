"""`worldsim data generate`, `data info`, `data caption`, and `data export` / `data import` (Minari datasets)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import warnings
from pathlib import Path

from worldsim.envs.captions import CAPTIONS, caption_dataset, captioned_scene
from worldsim.envs.dataset import GenerateSpec, generate
from worldsim.envs.manifest import dataset_status
from worldsim.envs.minari_io import export_minari, import_minari

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
    if captioned_scene(args.scene):
        caps = caption_dataset(args.out)
        print(f"{args.out}/{CAPTIONS}: {sum(len(e['captions']) for e in caps['episodes'])} captions")
    return 0


def _cmd_data_caption(args: argparse.Namespace) -> int:
    caps = caption_dataset(args.dir, seed=args.seed)
    n = sum(len(e["captions"]) for e in caps["episodes"])
    print(f"{args.dir}/{CAPTIONS}: {n} captions of {len(caps['episodes'])} episodes, e.g. "
          f"{caps['episodes'][0]['captions'][0]['text']!r}")
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


def _format(flag: str, given: list[str]) -> str:
    """The dataset name of `--to/--from FORMAT NAME`; Minari is the one format."""
    if given[0] != "minari":
        raise ValueError(f"{flag}: the one dataset format is minari (`{flag} minari NAME`), got {given[0]!r}")
    return given[1]


def _cmd_data_export(args: argparse.Namespace) -> int:
    name = _format("--to", args.to)
    r = export_minari(args.dir, name, minari_root=args.minari_root, frames=not args.no_frames)
    what = "with frames" if r["frames"] else "without frames"
    print(f"{args.dir} -> Minari dataset {r['name']} ({r['path']}): {r['episodes']} episodes, {r['steps']} steps, "
          f"{what}")
    return 0


def _cmd_data_import(args: argparse.Namespace) -> int:
    name = _format("--from", args.source)
    with warnings.catch_warnings(record=True) as caught:  # shown as one line each, as errors are
        warnings.simplefilter("always")
        r = import_minari(name, args.out, scene=args.scene, frames=args.frames, minari_root=args.minari_root)
    for w in caught:
        print(f"worldsim: warning: {w.message}", file=sys.stderr)
    what = "with frames" if r["frames"] else "without frames"
    same = "; shards byte for byte the exported ones" if r["identical"] else ""
    print(f"Minari dataset {name} -> {r['out']}: {r['scene']}, {r['episodes']} episodes, {r['steps']} steps, "
          f"{what}{same}")
    return 0


def _add_minari_parsers(dsub: argparse._SubParsersAction) -> None:
    root_help = "the Minari datasets root (default: $MINARI_DATASETS_PATH, else ~/.minari/datasets)"
    s = dsub.add_parser("export", help="write a dataset as a Minari dataset",
                        description="Write a complete dataset as a Minari dataset (observations: the states; infos: "
                                    "frame, physics_state, contacts, energy; metadata['worldsim']: the manifest). "
                                    "An existing Minari dataset of that name is never replaced. Needs "
                                    "`pip install 'worldsim[minari]'`.")
    s.add_argument("dir", help="dataset directory")
    s.add_argument("--to", nargs=2, required=True, metavar=("FORMAT", "NAME"),
                   help="minari and the Minari dataset name: namespace/name-vN or name-vN (e.g. worldsim/reacher-v0)")
    s.add_argument("--minari-root", default=None, metavar="PATH", help=root_help)
    s.add_argument("--no-frames", action="store_true", help="leave the frames out (states and the rest only)")
    s.set_defaults(func=_cmd_data_export)
    s = dsub.add_parser("import", help="write a Minari dataset (one `data export` wrote) as a dataset",
                        description="Write a Minari dataset that `worldsim data export` wrote as a dataset directory, "
                                    "after checking that this worldsim builds its scene with the same config. Needs "
                                    "`pip install 'worldsim[minari]'`.")
    s.add_argument("--from", dest="source", nargs=2, required=True, metavar=("FORMAT", "NAME"),
                   help="minari and the Minari dataset name (one `data export` wrote)")
    s.add_argument("--out", required=True, help="dataset directory to write (absent or empty)")
    s.add_argument("--scene", default=None, help="refuse the dataset unless it is of this scene")
    s.add_argument("--minari-root", default=None, metavar="PATH", help=root_help)
    frames = s.add_mutually_exclusive_group()
    frames.add_argument("--frames", dest="frames", action="store_const", const=True, default=None,
                        help="the frames are needed: refuse a dataset without them (default: keep them if present)")
    frames.add_argument("--no-frames", dest="frames", action="store_const", const=False,
                        help="leave the frames out (for state-only uses)")
    s.set_defaults(func=_cmd_data_import)


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
    """Register `data generate`, `data info`, `data export` and `data import`."""
    data = sub.add_parser("data", help="generate, inspect, export and import datasets",
                          description="Dataset commands.")
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
    s = dsub.add_parser("caption", help="caption every episode of a dataset from its recorded states",
                        description=f"Write DIR/{CAPTIONS}: for each episode, the slots read off its recorded states "
                                    "(what a prompt can say: where things start, how they move, what they hit "
                                    "first...) and captions saying random parts of them in varied wording. "
                                    "`data generate` writes it too; the file is a function of the states and "
                                    "--seed, so a rerun rewrites the same file.")
    s.add_argument("dir", help="dataset directory (complete)")
    s.add_argument("--seed", type=int, default=0, help="seed of the wording and of which slots each caption says")
    s.set_defaults(func=_cmd_data_caption)
    _add_minari_parsers(dsub)
