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

The manifest's fields, its checks and the shard records are `worldsim.envs.manifest`'s; this module
makes the episodes and shards and writes the manifest as they finish.
"""

from __future__ import annotations

import errno
import json
import multiprocessing as mp
import os
import queue as _queue
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium
import h5py
import mujoco
import numpy as np
from tqdm import tqdm

from worldsim._version import __version__
from worldsim.core.outputs import check_writable, file_sha256, nearest_existing
from worldsim.envs.manifest import FORMAT_VERSION, MANIFEST, _in_order, _stats, read_manifest, shard_name, shard_problem
from worldsim.envs.policies import make_policy
from worldsim.envs.registry import make_scene

# Keys that must match for a rerun to resume (or extend) an existing dataset directory.
IDENTITY_KEYS = ("format_version", "scene", "scene_options", "scene_config_hash", "policy", "seed",
                 "shard_size", "max_steps", "frames")
# Identity keys that manifests written before them lack, with the value those manifests meant.
IDENTITY_DEFAULTS = {"frames": True}
# Temporary files this module writes (the hidden manifest one is what older versions wrote).
PARTIAL_NAME = re.compile(r"\.?(manifest\.json|shard_\d{5,}\.h5)\.tmp-\d+")
_DISK_FULL = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded"}


@dataclass(frozen=True)
class GenerateSpec:
    """What to generate. `episodes` may grow on a rerun; everything else must stay the same."""

    scene: str
    out: str
    episodes: int
    policy: str = "mixed"
    seed: int = 0
    workers: int = 1
    shard_size: int = 16
    width: int = 64
    height: int = 64
    max_steps: int | None = None
    scene_options: tuple[tuple[str, Any], ...] = ()
    frames: bool = True

    def __post_init__(self) -> None:
        for name in ("episodes", "workers", "shard_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {self.seed!r}")
        if self.max_steps is not None and (not isinstance(self.max_steps, int) or self.max_steps < 1):
            raise ValueError(f"max_steps must be an int >= 1 or None, got {self.max_steps!r}")


def episode_seeds(seed: int, episode: int) -> tuple[int, int]:
    """(scene reset seed, policy seed) of episode `episode` in a dataset made with `seed`."""
    s = np.random.SeedSequence(seed, spawn_key=(episode,)).generate_state(2, np.uint32)
    return int(s[0]), int(s[1])


# --- one episode, one shard ---------------------------------------------------------------------


def run_episode(scene, policy, seed: int, episode: int, max_steps: int, render: bool = True) -> dict[str, np.ndarray]:
    """Roll out one seeded episode and return its arrays (see the module docstring); without
    `render`, every array but the frames (the physics, and so the states, are the same)."""
    reset_seed, policy_seed = episode_seeds(seed, episode)
    state, info = scene.reset(seed=reset_seed)
    policy.reset(scene, policy_seed)
    frames, states, physics, contacts, energy = [scene.render()] if render else [], [state], \
        [info["physics_state"]], [info["contacts"]], [info["energy"]]
    actions, rewards, terms, truncs = [], [], [], []
    for t in range(max_steps):
        action = np.asarray(policy.act(scene), dtype=np.float32)
        r = scene.step(action)
        if render:
            frames.append(scene.render())
        states.append(r.state)
        physics.append(r.info["physics_state"])
        contacts.append(r.info["contacts"])
        energy.append(r.info["energy"])
        actions.append(action)
        rewards.append(r.reward)
        terms.append(r.terminated)
        truncs.append(not r.terminated and t == max_steps - 1)
        if r.terminated:
            break
    out = {"frames": np.stack(frames).astype(np.uint8)} if render else {}
    return out | {
        "states": np.stack(states).astype(np.float64),
        "physics": np.stack(physics).astype(np.float64),
        "contacts": np.stack(contacts).astype(bool),
        "energy": np.asarray(energy, dtype=np.float64),
        "actions": np.stack(actions).astype(np.float32),
        "rewards": np.asarray(rewards, dtype=np.float32),
        "terminated": np.asarray(terms, dtype=bool),
        "truncated": np.asarray(truncs, dtype=bool),
    }


def _fill_shard(f: h5py.File, index: int, first: int, episodes: list[tuple[int, int, dict[str, np.ndarray]]]) -> None:
    f.attrs["format_version"] = FORMAT_VERSION
    f.attrs["shard"] = index
    f.attrs["first_episode"] = first
    f.attrs["num_episodes"] = len(episodes)
    grp = f.create_group("episodes")
    for ep, reset_seed, arrays in episodes:
        g = grp.create_group(f"{ep:07d}")
        g.attrs["episode"] = ep
        g.attrs["reset_seed"] = reset_seed
        g.attrs["length"] = len(arrays["actions"])
        for key, arr in arrays.items():
            if key == "frames":
                chunk = (min(len(arr), 32), *arr.shape[1:])
                g.create_dataset(key, data=arr, chunks=chunk, compression="lzf", track_times=False)
            else:
                g.create_dataset(key, data=arr, track_times=False)


def write_shard(path: Path, index: int, first: int, episodes: list[tuple[int, int, dict[str, np.ndarray]]]) -> None:
    """Write episodes to `path` atomically (see `write_file`).

    The HDF5 file is built in memory (the core driver, no backing store) and written with plain file
    I/O: HDF5 never touches the disk, so a full disk is one clean `OSError` rather than a storm of
    HDF5 errors. The image has the same bytes as the file h5py would write to disk.
    """
    with h5py.File(f"{path}.in-memory", "w", driver="core", backing_store=False, track_order=True) as f:
        _fill_shard(f, index, first, episodes)
        f.flush()
        image = f.id.get_file_image()
    write_file(path, image)


def write_file(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically and durably: a temporary file beside it, fsync, rename.

    A full disk (or quota) raises one `OSError` that names `path` and the free space left; on any
    failure the temporary file is removed and `path` is untouched.
    """
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        try:
            view = memoryview(data)
            while view:  # os.write may write less than asked
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in _DISK_FULL:
            raise _disk_full(path, exc.errno, len(data)) from None
        raise


def _disk_full(path: Path, code: int, size: int) -> OSError:
    try:
        free = f"{shutil.disk_usage(path.parent).free} bytes free"
    except OSError:
        free = "free space unknown"
    return OSError(code, f"{_DISK_FULL[code]} writing {path} ({size} bytes; {free} in {path.parent})")


# --- worker processes ---------------------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _worker_init(spec: GenerateSpec, progress: Any) -> None:
    _WORKER["progress"] = progress
    try:
        # One renderer per process, made once and reused for every shard this worker writes.
        _WORKER["scene"] = make_scene(spec.scene, spec.width, spec.height, **dict(spec.scene_options))
        _WORKER["policy"] = make_policy(spec.policy)
    except Exception as exc:  # noqa: BLE001
        # A pool whose initializer raises respawns its workers forever; the first shard reports it instead.
        _WORKER["error"] = exc


def _close_worker() -> None:
    if _WORKER.get("scene") is not None:
        _WORKER["scene"].close()
    _WORKER.clear()


def _generate_shard(spec: GenerateSpec, index: int, first: int, count: int, max_steps: int) -> dict[str, Any]:
    if "error" in _WORKER:
        raise _WORKER["error"]
    scene, policy, progress = _WORKER["scene"], _WORKER["policy"], _WORKER["progress"]
    t0 = time.perf_counter()
    episodes = []
    steps = 0
    for ep in range(first, first + count):
        arrays = run_episode(scene, policy, spec.seed, ep, max_steps, render=spec.frames)
        episodes.append((ep, episode_seeds(spec.seed, ep)[0], arrays))
        steps += len(arrays["actions"])
        if progress is not None:
            progress.put(len(arrays["states"]))
    path = Path(spec.out) / shard_name(index)
    write_shard(path, index, first, episodes)
    states = np.concatenate([a["states"] for _, _, a in episodes])
    return {
        "index": index,
        "file": path.name,
        "first_episode": first,
        "num_episodes": count,
        "steps": steps,
        "frames": int(sum(len(a["states"]) for _, _, a in episodes)),  # time steps (rows), rendered or not
        "sha256": file_sha256(path),
        "bytes": path.stat().st_size,
        "state_sum": states.sum(0).tolist(),
        "state_sqsum": np.square(states).sum(0).tolist(),
        "seconds": time.perf_counter() - t0,  # this worker's time on the shard, writing included
    }


# --- writing the manifest ---------------------------------------------------------------------


def _write_manifest(root: Path, manifest: dict[str, Any]) -> None:
    write_file(root / MANIFEST, (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode())


def _describe_shard(path: Path) -> dict[str, Any]:
    """The manifest record of a finished shard, read back from the file."""
    try:
        with h5py.File(path, "r") as f:
            index, first, count = (int(f.attrs[k]) for k in ("shard", "first_episode", "num_episodes"))
            eps = [f["episodes"][k] for k in f["episodes"]]
            states = np.concatenate([g["states"][()] for g in eps])
            steps = sum(int(g.attrs["length"]) for g in eps)
            frames = sum(g["states"].shape[0] for g in eps)
    except (OSError, KeyError, ValueError) as exc:
        raise ValueError(f"{path}: corrupt or unreadable shard ({exc})") from exc
    return {
        "index": index, "file": path.name, "first_episode": first, "num_episodes": count, "steps": steps,
        "frames": frames, "sha256": file_sha256(path), "bytes": path.stat().st_size,
        "state_sum": states.sum(0).tolist(), "state_sqsum": np.square(states).sum(0).tolist(),
    }


# --- the driver -------------------------------------------------------------------------------------


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


def _remove_partial(root: Path) -> None:
    for p in root.iterdir():
        if PARTIAL_NAME.fullmatch(p.name):
            p.unlink(missing_ok=True)


def _check_on_disk(path: Path, rec: dict[str, Any] | None, verify: bool) -> tuple[dict[str, Any] | None, str | None]:
    """(record, problem) of a shard file on disk; `rec` is its manifest record, None if unlisted."""
    if rec is None:  # renamed into place, but killed before the manifest said so
        try:
            return _describe_shard(path), None
        except ValueError:
            return None, "unreadable"
    problem = shard_problem(path, rec, verify)
    if problem == "wrong size" and file_sha256(path) == rec["sha256"]:
        return _describe_shard(path), None  # the very file listed: only its record's size was wrong
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
    _remove_partial(root)  # leftovers of a killed run

    plan, regenerated = _plan(root, manifest, spec, verify)
    # Shards beyond the requested count (a rerun asking for fewer episodes) are left alone but unlisted.
    manifest["shards"] = _in_order({k: v for k, v in manifest["shards"].items()
                                    if v["first_episode"] + v["num_episodes"] <= spec.episodes})
    manifest["episodes"] = spec.episodes
    manifest["complete"] = False
    _write_manifest(root, manifest)

    total = sum(c for _, _, c in plan)
    bar = tqdm(total=total * (max_steps + 1), unit="frame", desc=f"{spec.scene}", disable=not progress_bar,
               dynamic_ncols=True)
    t0 = time.perf_counter()
    progress = _Progress(bar)
    try:
        if spec.workers == 1 or len(plan) <= 1:
            _run_here(spec, plan, max_steps, root, manifest, progress)
        else:
            _run_pool(spec, plan, max_steps, root, manifest, progress)
    finally:
        bar.total = progress.n  # episodes that terminate early make fewer frames than the bound
        bar.close()
    elapsed = time.perf_counter() - t0

    manifest["shards"] = _in_order(manifest["shards"])
    manifest["stats"] = _stats(manifest["shards"])
    manifest["complete"] = True
    _write_manifest(root, manifest)
    manifest["_elapsed_s"] = elapsed
    manifest["_generated_frames"] = progress.n
    manifest["_regenerated"] = regenerated
    return manifest


def _run_here(spec: GenerateSpec, plan: list, max_steps: int, root: Path, manifest: dict[str, Any],
              progress: _Progress) -> None:
    _worker_init(spec, progress)
    try:
        for index, first, count in plan:
            rec = _generate_shard(spec, index, first, count, max_steps)
            manifest["shards"][rec["file"]] = rec
            _write_manifest(root, manifest)
    finally:
        _close_worker()


def _run_pool(spec: GenerateSpec, plan: list, max_steps: int, root: Path, manifest: dict[str, Any],
              progress: _Progress) -> None:
    ctx = mp.get_context("spawn")  # GL contexts do not survive a fork
    queue = ctx.Queue()  # no Manager process: nothing outlives a killed run
    with ctx.Pool(min(spec.workers, len(plan)), _worker_init, (spec, queue)) as pool:
        try:
            pending = [pool.apply_async(_generate_shard, (spec, i, f, c, max_steps)) for i, f, c in plan]
            while pending:
                _drain(queue, progress)
                for job in [j for j in pending if j.ready()]:
                    rec = job.get()  # a worker's error (e.g. a full disk) is raised here, once
                    manifest["shards"][rec["file"]] = rec
                    _write_manifest(root, manifest)
                    pending.remove(job)
                time.sleep(0.05)
            _drain(queue, progress)
        except BaseException:
            # Stop the other workers now, and remove the temporary files of the shards they were writing.
            pool.terminate()
            pool.join()
            _remove_partial(root)
            raise


class _Progress:
    """Counts generated frames (the bar may be disabled) and shows them on the bar."""

    def __init__(self, bar: Any):
        self.bar, self.n = bar, 0

    def put(self, n: int) -> None:
        self.n += n
        self.bar.update(n)


def _drain(queue: Any, progress: _Progress) -> None:
    while True:
        try:
            progress.put(queue.get_nowait())
        except _queue.Empty:
            return
