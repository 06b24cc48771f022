"""Generating datasets of MuJoCo episodes: a manifest plus HDF5 shards, in parallel and resumable.

    DIR/
      manifest.json        scene, scene config + hash, policy, seed, counts, versions, shard list, stats
      shard_00000.h5       episodes [0, S)      written as shard_00000.h5.tmp-PID, then renamed
      shard_00001.h5       episodes [S, 2S)
      ...

Episode `e` of a dataset with seed `K` depends only on `(K, e)`: its reset seed and its policy seed
come from `numpy.random.SeedSequence(K, spawn_key=(e,))`. So the result is the same bit for bit
whatever the number of workers, and a killed run resumes by regenerating only the missing shards;
a rerun also regenerates listed shards that are missing or corrupt (size, and with `verify` SHA-256).

Each episode of length L (actions taken) is an HDF5 group `episodes/{e:07d}` holding:
frames uint8 [L+1, H, W, 3], states float64 [L+1, S], physics float64 [L+1, nq+nv],
contacts bool [L+1, P], energy float64 [L+1], actions float32 [L, A], rewards float32 [L],
terminated bool [L], truncated bool [L].

A dataset generated with `frames=False` (`--no-frames`) holds everything but the frames, and its
manifest says `"frames": false`: it costs no rendering and a few hundred bytes a step, and serves
state-only uses (the state pathway's `--state-data`), never the tokenizer or the frame stream.

Every argument is checked (policy, scene, one probe frame at the asked size, a writable directory)
before anything is written. A shard is built in memory and written with plain file I/O, so a full
disk stops the run with one `OSError` naming the file and the free space, and leaves no partial file.

The manifest's fields, its checks and the shard records are `worldsim.envs.manifest`'s; one episode
and its seeds are `worldsim.envs.episodes`'s, writing files `worldsim.envs.shards`'s and the worker
processes `worldsim.envs.dataset_workers`'s. This module plans the shards (what to write, resume or
repair) and drives the run.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import gymnasium
import mujoco
import numpy as np
from tqdm import tqdm

from worldsim._version import __version__
from worldsim.core.outputs import check_writable, file_sha256, nearest_existing
from worldsim.envs.dataset_workers import Progress, run_here, run_pool
from worldsim.envs.episodes import GenerateSpec, episode_seeds, run_episode
from worldsim.envs.loader import describe_shard
from worldsim.envs.manifest import FORMAT_VERSION, MANIFEST, _in_order, _stats, read_manifest, shard_name, shard_problem
from worldsim.envs.policies import make_policy
from worldsim.envs.registry import make_scene
from worldsim.envs.shards import PARTIAL_NAME, remove_partial, write_manifest

__all__ = ["GenerateSpec", "episode_seeds", "generate", "run_episode"]

# Keys that must match for a rerun to resume (or extend) an existing dataset directory.
IDENTITY_KEYS = ("format_version", "scene", "scene_options", "scene_config_hash", "policy", "seed",
                 "shard_size", "max_steps", "frames")
# Identity keys a manifest may lack, with the value their absence means.
IDENTITY_DEFAULTS = {"frames": True}


def _new_manifest(spec: GenerateSpec, scene) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "scene": spec.scene,
        "scene_options": dict(spec.scene_options),
        "scene_config": scene.config(),
        "scene_config_hash": scene.config_hash(),
        "policy": spec.policy,
        "seed": spec.seed,
        "shard_size": spec.shard_size,
        "max_steps": spec.max_steps or scene.max_episode_steps,
        "episodes": spec.episodes,
        "dt": scene.dt,
        "frames": spec.frames,
        "width": spec.width,
        "height": spec.height,
        "state_dim": scene.state_dim,
        "action_dim": int(scene.action_space.shape[0]),
        "action_low": scene.action_space.low.tolist(),
        "action_high": scene.action_space.high.tolist(),
        "physics_dim": scene.physics_dim,
        "contact_pairs": [list(p) for p in scene.contact_pairs],
        "versions": {"worldsim": __version__, "mujoco": mujoco.__version__, "gymnasium": gymnasium.__version__,
                     "numpy": np.__version__},
        "shards": {},
        "complete": False,
    }


def _probe(spec: GenerateSpec) -> dict[str, Any]:
    """Build the policy and the scene, render one frame at the asked size (when rendering), and return
    the new manifest: a bad argument fails here, before anything is written."""
    make_policy(spec.policy)
    with make_scene(spec.scene, spec.width, spec.height, **dict(spec.scene_options)) as scene:
        if spec.frames:
            scene.reset(seed=0)
            try:
                scene.render()
            except (mujoco.FatalError, RuntimeError) as exc:
                raise ValueError(f"cannot render {spec.width}x{spec.height} frames of {spec.scene} (--size "
                                 f"{spec.width}): {exc}") from exc
        return _new_manifest(spec, scene)


def _check_identity(root: Path, old: dict[str, Any], new: dict[str, Any]) -> None:
    def get(m: dict[str, Any], k: str) -> Any:
        return m.get(k, IDENTITY_DEFAULTS.get(k))

    diffs = [f"{k}: directory has {get(old, k)!r}, asked for {get(new, k)!r}" for k in IDENTITY_KEYS
             if get(old, k) != get(new, k)]
    if diffs:
        raise ValueError(
            f"{root} was made for another scene or config; refusing to append to it ("
            + "; ".join(diffs) + "). Use a new --out directory."
        )


def _check_on_disk(path: Path, rec: dict[str, Any] | None, verify: bool) -> tuple[dict[str, Any] | None, str | None]:
    """(record, problem) of a shard file on disk; `rec` is its manifest record, None if unlisted."""
    if rec is None:  # renamed into place, but killed before the manifest said so
        try:
            return describe_shard(path), None
        except ValueError:
            return None, "unreadable"
    problem = shard_problem(path, rec, verify)
    if problem == "wrong size" and file_sha256(path) == rec["sha256"]:
        return describe_shard(path), None  # the very file listed: only its record's size was wrong
    return rec, problem


def _plan(root: Path, manifest: dict[str, Any], spec: GenerateSpec, verify: bool) -> tuple[list, list[str]]:
    """The shards to write, as (index, first episode, count), and the names of those among them that
    were bad (missing, corrupt); bad files are deleted, good ones kept in `manifest["shards"]`."""
    plan, bad = [], []
    for index in range((spec.episodes + spec.shard_size - 1) // spec.shard_size):
        first = index * spec.shard_size
        count = min(spec.shard_size, spec.episodes - first)
        name = shard_name(index)
        rec, problem = manifest["shards"].pop(name, None), None
        if (root / name).exists():
            rec, problem = _check_on_disk(root / name, rec, verify)
            if problem is None and (rec["first_episode"], rec["num_episodes"]) == (first, count):
                manifest["shards"][name] = rec
                continue
            (root / name).unlink()  # bad, or a smaller last shard from a run with fewer episodes
        elif rec is not None:
            problem = "missing"
        if problem is not None:
            bad.append(name)
        plan.append((index, first, count))
    return plan, bad


def generate(spec: GenerateSpec, progress_bar: bool = True, verify: bool = False) -> dict[str, Any]:
    """Generate (or resume, extend, or repair) the dataset `spec` describes; returns the final manifest.

    Every listed shard is checked against its record (its size; its SHA-256 too with `verify`, which
    reads the whole dataset) and regenerated when missing or corrupt. The returned manifest also holds
    `_elapsed_s`, `_generated_frames` and `_regenerated` (the names of the shards found bad).
    """
    root = Path(spec.out)
    if root.exists() and not root.is_dir():
        raise ValueError(f"--out {root} exists and is not a directory")
    base = nearest_existing(root)
    if not base.is_dir():  # a file in the way above --out: check_writable leaves naming it to us
        raise ValueError(f"--out {root}: {base} exists and is not a directory")
    check_writable(root, "--out")
    manifest = _probe(spec)
    max_steps = manifest["max_steps"]
    if (root / MANIFEST).exists():
        old = read_manifest(root)
        _check_identity(root, old, manifest)
        manifest["shards"] = old["shards"]
    elif root.exists() and any(not PARTIAL_NAME.fullmatch(p.name) for p in root.iterdir()):
        raise ValueError(f"--out {root} is a non-empty directory without a {MANIFEST}; refusing to write into it")
    root.mkdir(parents=True, exist_ok=True)
    remove_partial(root)  # leftovers of a killed run

    plan, regenerated = _plan(root, manifest, spec, verify)
    # Shards beyond the requested count (a rerun asking for fewer episodes) are left alone but unlisted.
    manifest["shards"] = _in_order({k: v for k, v in manifest["shards"].items()
                                    if v["first_episode"] + v["num_episodes"] <= spec.episodes})
    manifest["episodes"] = spec.episodes
    manifest["complete"] = False
    write_manifest(root, manifest)

    total = sum(c for _, _, c in plan)
    bar = tqdm(total=total * (max_steps + 1), unit="frame", desc=f"{spec.scene}", disable=not progress_bar,
               dynamic_ncols=True)
    t0 = time.perf_counter()
    progress = Progress(bar)
    try:
        if spec.workers == 1 or len(plan) <= 1:
            run_here(spec, plan, max_steps, root, manifest, progress)
        else:
            run_pool(spec, plan, max_steps, root, manifest, progress)
    finally:
        bar.total = progress.n  # episodes that terminate early make fewer frames than the bound
        bar.close()
    elapsed = time.perf_counter() - t0

    manifest["shards"] = _in_order(manifest["shards"])
    manifest["stats"] = _stats(manifest["shards"])
    manifest["complete"] = True
    write_manifest(root, manifest)
    manifest["_elapsed_s"] = elapsed
    manifest["_generated_frames"] = progress.n
    manifest["_regenerated"] = regenerated
    return manifest
