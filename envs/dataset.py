"""Datasets of MuJoCo episodes: a manifest plus HDF5 shards, generated in parallel and resumable.

    DIR/
      manifest.json        scene, scene config + hash, policy, seed, counts, versions, shard list, stats
      shard_00000.h5       episodes [0, S)      written as shard_00000.h5.tmp-PID, then renamed
      shard_00001.h5       episodes [S, 2S)
      ...

Episode `e` of a dataset with seed `K` depends only on `(K, e)`: its reset seed and its policy seed
come from `numpy.random.SeedSequence(K, spawn_key=(e,))`. So the result is the same bit for bit
whatever the number of workers, and a killed run resumes by regenerating only the missing shards.

Each episode of length L (actions taken) is an HDF5 group `episodes/{e:07d}` holding:
frames uint8 [L+1, H, W, 3], states float64 [L+1, S], physics float64 [L+1, nq+nv],
contacts bool [L+1, P], energy float64 [L+1], actions float32 [L, A], rewards float32 [L],
terminated bool [L], truncated bool [L].

A dataset generated with `frames=False` (`--no-frames`) holds everything but the frames, and its
manifest says `"frames": false`: it costs no rendering and a few hundred bytes a step, and serves
state-only uses (the state pathway's `--state-data`), never the tokenizer or the frame stream.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
# Keys that must match for a rerun to resume (or extend) an existing dataset directory.
IDENTITY_KEYS = ("format_version", "scene", "scene_options", "scene_config_hash", "policy", "seed",
                 "shard_size", "max_steps", "frames")
# Identity keys that manifests written before them lack, with the value those manifests meant.
IDENTITY_DEFAULTS = {"frames": True}


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


def shard_name(index: int) -> str:
    return f"shard_{index:05d}.h5"


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


def write_shard(path: Path, index: int, first: int, episodes: list[tuple[int, int, dict[str, np.ndarray]]]) -> None:
    """Write episodes to `path` atomically: a temporary file, fsync, then rename."""
    import h5py

    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        with h5py.File(tmp, "w", track_order=True) as f:
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
            f.flush()
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --- worker processes ---------------------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _worker_init(spec: GenerateSpec, progress: Any) -> None:
    from worldsim.envs.policies import make_policy
    from worldsim.envs.registry import make_scene

    # One renderer per process, made once and reused for every shard this worker writes.
    _WORKER["scene"] = make_scene(spec.scene, spec.width, spec.height, **dict(spec.scene_options))
    _WORKER["policy"] = make_policy(spec.policy)
    _WORKER["progress"] = progress


def _generate_shard(spec: GenerateSpec, index: int, first: int, count: int, max_steps: int) -> dict[str, Any]:
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


# --- the manifest and the driver ----------------------------------------------------------------


def read_manifest(root: str | Path) -> dict[str, Any]:
    """Read `DIR/manifest.json`, with a clear error when the directory is not a dataset."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise ValueError(f"{root}: not a worldsim dataset (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: corrupt manifest ({exc})") from exc
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: expected format_version {FORMAT_VERSION}, got {manifest.get('format_version')!r}")
    return manifest


def _write_manifest(root: Path, manifest: dict[str, Any]) -> None:
    tmp = root / f".{MANIFEST}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, root / MANIFEST)


def _describe_shard(path: Path) -> dict[str, Any]:
    """The manifest record of a finished shard, read back from the file."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            index, first, count = (int(f.attrs[k]) for k in ("shard", "first_episode", "num_episodes"))
            eps = [f["episodes"][k] for k in f["episodes"]]
            states = np.concatenate([g["states"][()] for g in eps])
            steps = sum(int(g.attrs["length"]) for g in eps)
            frames = sum(g["states"].shape[0] for g in eps)
    except (OSError, KeyError) as exc:
        raise ValueError(f"{path}: corrupt or unreadable shard ({exc})") from exc
    return {
        "index": index, "file": path.name, "first_episode": first, "num_episodes": count, "steps": steps,
        "frames": frames, "sha256": file_sha256(path), "bytes": path.stat().st_size,
        "state_sum": states.sum(0).tolist(), "state_sqsum": np.square(states).sum(0).tolist(),
    }


def _new_manifest(spec: GenerateSpec, scene) -> dict[str, Any]:
    import gymnasium
    import mujoco

    from worldsim._version import __version__

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


def generate(spec: GenerateSpec, progress_bar: bool = True) -> dict[str, Any]:
    """Generate (or resume, or extend) the dataset `spec` describes; returns the final manifest."""
    from tqdm import tqdm

    from worldsim.envs.registry import make_scene

    root = Path(spec.out)
    if root.exists() and not root.is_dir():
        raise ValueError(f"--out {root} exists and is not a directory")
    with make_scene(spec.scene, spec.width, spec.height, **dict(spec.scene_options)) as scene:
        manifest = _new_manifest(spec, scene)
    max_steps = manifest["max_steps"]
    if (root / MANIFEST).exists():
        old = read_manifest(root)
        _check_identity(root, old, manifest)
        manifest["shards"] = old.get("shards", {})
    elif root.exists() and any(root.iterdir()):
        raise ValueError(f"--out {root} is a non-empty directory without a {MANIFEST}; refusing to write into it")
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob("*.tmp-*"):  # leftovers of a killed run
        stale.unlink()

    plan = []
    for index in range((spec.episodes + spec.shard_size - 1) // spec.shard_size):
        first = index * spec.shard_size
        count = min(spec.shard_size, spec.episodes - first)
        name = shard_name(index)
        rec = manifest["shards"].get(name)
        if (root / name).exists():
            if rec is None:  # renamed into place, but killed before the manifest said so
                rec = _describe_shard(root / name)
            if rec["first_episode"] == first and rec["num_episodes"] == count:
                manifest["shards"][name] = rec
                continue
            (root / name).unlink()  # a smaller last shard from a run with fewer episodes
        manifest["shards"].pop(name, None)
        plan.append((index, first, count))
    # Shards beyond the requested count (a rerun asking for fewer episodes) are left alone but unlisted.
    manifest["shards"] = {k: v for k, v in manifest["shards"].items()
                          if v["first_episode"] + v["num_episodes"] <= spec.episodes}
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
            _worker_init(spec, progress)
            try:
                for index, first, count in plan:
                    rec = _generate_shard(spec, index, first, count, max_steps)
                    manifest["shards"][rec["file"]] = rec
                    _write_manifest(root, manifest)
            finally:
                _WORKER["scene"].close()
                _WORKER.clear()
        else:
            ctx = mp.get_context("spawn")  # GL contexts do not survive a fork
            queue = ctx.Queue()  # no Manager process: nothing outlives a killed run
            with ctx.Pool(min(spec.workers, len(plan)), _worker_init, (spec, queue)) as pool:
                pending = [pool.apply_async(_generate_shard, (spec, i, f, c, max_steps)) for i, f, c in plan]
                while pending:
                    _drain(queue, progress)
                    for job in [j for j in pending if j.ready()]:
                        rec = job.get()
                        manifest["shards"][rec["file"]] = rec
                        _write_manifest(root, manifest)
                        pending.remove(job)
                    time.sleep(0.05)
                _drain(queue, progress)
    finally:
        bar.total = progress.n  # episodes that terminate early make fewer frames than the bound
        bar.close()
    elapsed = time.perf_counter() - t0

    frames = sum(r["frames"] for r in manifest["shards"].values())
    s1 = np.sum([r["state_sum"] for r in manifest["shards"].values()], axis=0)
    s2 = np.sum([r["state_sqsum"] for r in manifest["shards"].values()], axis=0)
    mean = s1 / frames
    manifest["stats"] = {
        "frames": int(frames),
        "steps": int(sum(r["steps"] for r in manifest["shards"].values())),
        "state_mean": mean.tolist(),
        "state_std": np.sqrt(np.maximum(s2 / frames - mean**2, 0.0)).tolist(),
    }
    manifest["complete"] = True
    _write_manifest(root, manifest)
    manifest["_elapsed_s"] = elapsed
    manifest["_generated_frames"] = progress.n
    return manifest


class _Progress:
    """Counts generated frames (the bar may be disabled) and shows them on the bar."""

    def __init__(self, bar: Any):
        self.bar, self.n = bar, 0

    def put(self, n: int) -> None:
        self.n += n
        self.bar.update(n)


def _drain(queue: Any, progress: _Progress) -> None:
    import queue as _q

    while True:
        try:
            progress.put(queue.get_nowait())
        except _q.Empty:
            return
