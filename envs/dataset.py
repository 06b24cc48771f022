"""Datasets of MuJoCo episodes: a manifest plus HDF5 shards, generated in parallel and resumable.

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
"""

from __future__ import annotations

import errno
import hashlib
import json
import multiprocessing as mp
import os
import queue as _queue
import re
import shutil
import tempfile
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
from worldsim.envs.policies import make_policy
from worldsim.envs.registry import make_scene

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
# Keys that must match for a rerun to resume (or extend) an existing dataset directory.
IDENTITY_KEYS = ("format_version", "scene", "scene_options", "scene_config_hash", "policy", "seed",
                 "shard_size", "max_steps", "frames")
# Identity keys that manifests written before them lack, with the value those manifests meant.
IDENTITY_DEFAULTS = {"frames": True}
# A shard's name, as `shard_name` makes it: a plain file name, so a manifest never points outside DIR.
SHARD_NAME = re.compile(r"shard_\d{5,}\.h5")
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


def shard_name(index: int) -> str:
    return f"shard_{index:05d}.h5"


def _shard_index(name: str) -> int:
    return int(name[len("shard_") : -len(".h5")])


def _in_order(shards: dict[str, Any]) -> dict[str, Any]:
    """Shard records by shard index (a dict fills in completion order, which varies between runs)."""
    return {k: shards[k] for k in sorted(shards, key=_shard_index)}


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


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def shard_problem(path: Path, rec: dict[str, Any], verify: bool = False) -> str | None:
    """What is wrong with a listed shard's file, against its manifest record: "missing", "wrong size",
    or "wrong sha256" (read only with `verify`: hashing a dataset reads all of it); None when fine."""
    if not path.is_file():
        return "missing"
    if path.stat().st_size != rec["bytes"]:
        return "wrong size"
    if verify and file_sha256(path) != rec["sha256"]:
        return "wrong sha256"
    return None


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


# --- the manifest ---------------------------------------------------------------------------------

_KINDS = {int: "an int", bool: "a bool", str: "a string", dict: "an object", list: "a list"}
# Top-level fields the code reads, with their kinds and, for ints, their least allowed value.
_FIELDS = {"scene": (str, None), "scene_config_hash": (str, None), "policy": (str, None), "seed": (int, 0),
           "shard_size": (int, 1), "max_steps": (int, 1), "episodes": (int, 1), "width": (int, 1),
           "height": (int, 1), "state_dim": (int, 1), "action_dim": (int, 1), "shards": (dict, None),
           "complete": (bool, None), "versions": (dict, None)}
_RECORD_FIELDS = {"sha256": (str, None), "bytes": (int, 0), "first_episode": (int, 0), "num_episodes": (int, 1),
                  "steps": (int, 0), "frames": (int, 1)}
_STATS_FIELDS = {"frames": (int, 1), "steps": (int, 0)}


def _get(path: Path, obj: dict[str, Any], key: str, kind: type, least: int | None = None, where: str = "",
         label: str = "") -> Any:
    """obj[key], checked to be of `kind` (and >= `least`); a ValueError naming the file and field if not."""
    if key not in obj:
        raise ValueError(f"{path}: malformed manifest: {where}missing field '{label}{key}'")
    v = obj[key]
    if not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
        raise ValueError(f"{path}: {where}{label}{key}: expected {_KINDS[kind]}, got {v!r}")
    if least is not None and v < least:
        raise ValueError(f"{path}: {where}{label}{key}: expected an int >= {least}, got {v}")
    return v


def _vector(path: Path, v: Any, n: int, label: str) -> np.ndarray:
    """A list of `n` finite numbers, as float64."""
    if not isinstance(v, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
        raise ValueError(f"{path}: {label}: expected a list of {n} numbers, got {v!r:.100}")
    if len(v) != n:
        raise ValueError(f"{path}: {label}: expected {n} values, got {len(v)}")
    a = np.asarray(v, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{path}: {label}: expected finite values, got {v}")
    return a


def _check_record(path: Path, name: str, rec: Any, state_dim: int) -> None:
    if not SHARD_NAME.fullmatch(name):
        raise ValueError(f"{path}: shard name {name!r} is not of the form shard_NNNNN.h5 (a file in the dataset "
                         "directory)")
    where = f"shard {name}: "
    if not isinstance(rec, dict):
        raise ValueError(f"{path}: {where}expected an object, got {rec!r:.100}")
    if _get(path, rec, "file", str, where=where) != name:
        raise ValueError(f"{path}: {where}file {rec['file']!r} differs from its name")
    for key, (kind, least) in _RECORD_FIELDS.items():
        _get(path, rec, key, kind, least, where=where)
    if not re.fullmatch(r"[0-9a-f]{64}", rec["sha256"]):
        raise ValueError(f"{path}: {where}sha256: expected 64 hex digits, got {rec['sha256']!r}")
    for key in ("state_sum", "state_sqsum"):
        _vector(path, _get(path, rec, key, list, where=where), state_dim, f"{where}{key}")


def _stats(shards: dict[str, Any]) -> dict[str, Any]:
    """The dataset's statistics from its shard records, summed in shard order: a resumed run's are the
    same bits as an uninterrupted one's."""
    recs = list(_in_order(shards).values())
    frames = sum(r["frames"] for r in recs)
    s1 = np.sum([r["state_sum"] for r in recs], axis=0)
    s2 = np.sum([r["state_sqsum"] for r in recs], axis=0)
    mean = s1 / frames
    return {
        "frames": int(frames),
        "steps": int(sum(r["steps"] for r in recs)),
        "state_mean": mean.tolist(),
        "state_std": np.sqrt(np.maximum(s2 / frames - mean**2, 0.0)).tolist(),
    }


def _check_stats(path: Path, m: dict[str, Any]) -> None:
    """A complete manifest's shards cover its episodes once each, and its stats are the shards'."""
    spans = sorted((r["first_episode"], r["num_episodes"]) for r in m["shards"].values())
    ends = np.cumsum([c for _, c in spans], dtype=np.int64)
    if [f for f, _ in spans] != [0, *ends[:-1].tolist()] or not len(ends) or ends[-1] != m["episodes"]:
        raise ValueError(f"{path}: marked complete, but its shards do not hold episodes 0 to {m['episodes'] - 1} "
                         "once each")
    st = _get(path, m, "stats", dict)
    for key, (kind, least) in _STATS_FIELDS.items():
        _get(path, st, key, kind, least, label="stats.")
    d = m["state_dim"]
    mean = _vector(path, _get(path, st, "state_mean", list, label="stats."), d, "stats.state_mean")
    std = _vector(path, _get(path, st, "state_std", list, label="stats."), d, "stats.state_std")
    if np.any(std < 0):
        raise ValueError(f"{path}: stats.state_std: expected values >= 0, got {std.tolist()}")
    want = _stats(m["shards"])
    for key in ("frames", "steps"):
        if st[key] != want[key]:
            raise ValueError(f"{path}: stats.{key} is {st[key]}, but the shards hold {want[key]}")
    # Recomputed from the records, to the precision of any summation order (older runs summed in
    # completion order): the mean against the RMS, the variance against the mean square.
    sq = np.sum([r["state_sqsum"] for r in m["shards"].values()], axis=0) / want["frames"]
    for key, got, ref, tol in (("state_mean", mean, np.asarray(want["state_mean"]), 1e-9 * np.sqrt(sq)),
                               ("state_std", std**2, np.asarray(want["state_std"]) ** 2, 1e-9 * sq)):
        bad = np.flatnonzero(np.abs(got - ref) > tol)
        if bad.size:
            i = int(bad[0])
            shown = (mean if key == "state_mean" else std)[i]
            raise ValueError(f"{path}: stats.{key} does not match the shard records' state_sum / state_sqsum "
                             f"(dimension {i}: {shown!r}, the records give {want[key][i]!r}); the manifest was "
                             "edited or is corrupt: regenerate the dataset")


def read_manifest(root: str | Path) -> dict[str, Any]:
    """Read and check `DIR/manifest.json`: a ValueError naming the file says what is wrong when the
    directory is not a dataset, a field is missing or of the wrong kind, a shard name points outside
    the directory, or a complete manifest's stats are not its shards'."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise ValueError(f"{root}: not a worldsim dataset (no {MANIFEST})")
    try:
        m = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: corrupt manifest ({exc})") from exc
    if not isinstance(m, dict):
        raise ValueError(f"{path}: corrupt manifest (expected a JSON object, got {type(m).__name__})")
    if m.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: expected format_version {FORMAT_VERSION}, got {m.get('format_version')!r}")
    for key, (kind, least) in _FIELDS.items():
        _get(path, m, key, kind, least)
    if "frames" in m:  # optional: manifests made before it meant a rendered dataset (IDENTITY_DEFAULTS)
        _get(path, m, "frames", bool)
    for name, rec in m["shards"].items():
        _check_record(path, name, rec, m["state_dim"])
    if m["complete"]:
        _check_stats(path, m)
    return m


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


def dataset_status(root: str | Path, verify: bool = False) -> dict[str, Any]:
    """Check a dataset's listed shards against its manifest.

    Returns a dict: `manifest`; `shards`, each listed shard's "ok", "missing", "wrong size" or "wrong
    sha256" (the size is always checked, the SHA-256 only with `verify`); `bad_shards`, those not ok;
    `verified`; and `complete`, the manifest's, and False whenever a listed shard is bad.
    """
    root = Path(root)
    m = read_manifest(root)
    shards = {name: shard_problem(root / name, rec, verify) or "ok" for name, rec in _in_order(m["shards"]).items()}
    bad = {k: v for k, v in shards.items() if v != "ok"}
    return {"manifest": m, "complete": m["complete"] and not bad, "shards": shards, "bad_shards": bad,
            "verified": verify}


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


def _check_writable(root: Path) -> None:
    """Refuse an --out that cannot be written (no permission, a read-only file system) before any work:
    a temporary file is made and removed in it, or in its nearest existing parent."""
    probe = root
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ValueError(f"--out {root}: {probe} exists and is not a directory")
    try:
        fd, name = tempfile.mkstemp(prefix=".worldsim-probe-", dir=probe)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot write to --out {root}: {probe} is not writable ({exc.strerror})") from None


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
    _check_writable(root)
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
