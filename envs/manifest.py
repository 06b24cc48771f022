"""The manifest of a dataset: its fields, their checks, and the records of its shards.

`DIR/manifest.json` describes a dataset (see `worldsim.envs.dataset`): its scene, scene config and
hash, policy, seed, counts, versions, one record per shard file (name, episodes, size, SHA-256 and
state sums) and, once complete, the dataset's state statistics. `read_manifest` checks every field
the code reads, that shard names stay inside the directory, and that a complete manifest's shards
cover its episodes once each with the stats they give; `shard_problem` and `dataset_status` check
the shard files on disk against their records.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from worldsim.core.outputs import file_sha256

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
# A shard's name, as `shard_name` makes it: a plain file name, so a manifest never points outside DIR.
SHARD_NAME = re.compile(r"shard_\d{5,}\.h5")


def shard_name(index: int) -> str:
    return f"shard_{index:05d}.h5"


def _shard_index(name: str) -> int:
    return int(name[len("shard_") : -len(".h5")])


def _in_order(shards: dict[str, Any]) -> dict[str, Any]:
    """Shard records by shard index (a dict fills in completion order, which varies between runs)."""
    return {k: shards[k] for k in sorted(shards, key=_shard_index)}


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
    # Recomputed from the records, to the precision of any summation order (the stats may have been
    # summed in shard completion order): the mean against the RMS, the variance against the mean square.
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
    if "frames" in m:  # optional: a manifest without it is a rendered dataset (dataset.IDENTITY_DEFAULTS)
        _get(path, m, "frames", bool)
    for name, rec in m["shards"].items():
        _check_record(path, name, rec, m["state_dim"])
    if m["complete"]:
        _check_stats(path, m)
    return m


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
