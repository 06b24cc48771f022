"""Datasets that travel: a worldsim dataset written as a Minari dataset, and a Minari dataset written
by worldsim read back as a native one.

`export_minari(DIR, NAME)` writes the episodes of a complete dataset through Minari's own writer
(`minari.create_dataset_from_buffers`), so `minari.load_dataset(NAME)` opens the result. Episode `e`
of the dataset is Minari episode `e`:

    observations           float64 [L+1, S]         the scene's states (native `states`)
    actions                float32 [L, A]
    rewards                float32 [L]
    terminations           bool [L]                 native `terminated`
    truncations            bool [L]                 native `truncated`
    infos["frame"]         uint8 [L+1, H, W, 3]     the rendered frames (absent without frames)
    infos["physics_state"] float64 [L+1, nq+nv]     native `physics`
    infos["contacts"]      bool [L+1, P]            one flag per manifest `contact_pairs` entry
    infos["energy"]        float64 [L+1]
    seed (episode metadata)                         the episode's reset seed
    metadata["worldsim"]   {"format": 1, "frames": bool, "manifest": the dataset's manifest.json}

The frames go in the infos, not in a Dict observation space: the observation stays the flat state
vector that offline-RL code expects (and that Gymnasium's own env of the scene, recorded as the env
spec when Gymnasium knows the scene, observes), and Minari stores infos as plain arrays, where it
JPEG-encodes image observations by default, which would not give the frames back bit for bit.

`import_minari(NAME, OUT)` writes such a dataset back as a native dataset directory, which
`EpisodeDataset(OUT)` then reads with all its checks (SHA-256 per shard, manifest statistics). The
dataset's scene must be one this worldsim builds with the same config (the config hash the manifest
records), and the `scene` the caller names, if any. The shards are built as `data generate` builds
them, so in the same software environment they are byte for byte the files that were exported.

Both write under a temporary name and rename the whole at the end: a failure (or a kill) leaves
nothing under the target name, and neither replaces an existing Minari dataset or a non-empty OUT.
Minari is an optional dependency (`pip install 'worldsim[minari]'`), imported only here.
"""

from __future__ import annotations

import dataclasses
import os
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gymnasium
import h5py
import numpy as np

from worldsim.core.extras import MissingExtra
from worldsim.core.outputs import check_writable, fsync_dir, nearest_existing, pid_alive, remove_tree
from worldsim.envs.episodes import episode_seeds
from worldsim.envs.loader import describe_shard
from worldsim.envs.manifest import _FIELDS, FORMAT_VERSION, _get, _stats, read_manifest, shard_name, shard_problem
from worldsim.envs.registry import make_scene
from worldsim.envs.shards import write_manifest, write_shard

METADATA_KEY = "worldsim"
MINARI_FORMAT = 1
# Minari's dataset ids, with the version it needs to parse one: "(namespace/)name-vN".
NAME_RE = re.compile(r"(?:(?P<namespace>[-\w]+(?:/[-\w]+)*)/)?(?P<name>[-\w]+?)-v(?P<version>\d+)")
NAME_HELP = ("expected 'namespace/name-vN' or 'name-vN' (letters, digits, '-' and '_'; a namespace of at least 2 "
             "characters, nested with '/'; N a version number), e.g. 'worldsim/reacher-v0'")
# Native array names in the order `run_episode` makes them: `write_shard` writes them in this order, so
# an imported shard is the same bytes as a generated one.
NATIVE_KEYS = ("frames", "states", "physics", "contacts", "energy", "actions", "rewards", "terminated", "truncated")
NATIVE_DTYPES = {"frames": np.uint8, "states": np.float64, "physics": np.float64, "contacts": bool,
                 "energy": np.float64, "actions": np.float32, "rewards": np.float32, "terminated": bool,
                 "truncated": bool}
# Minari infos key -> native array name.
INFOS = {"frame": "frames", "physics_state": "physics", "contacts": "contacts", "energy": "energy"}
# Manifest fields the import reads beyond those `read_manifest` checks.
_MORE_FIELDS = {"format_version": (int, 1), "scene_options": (dict, None), "physics_dim": (int, 1),
                "contact_pairs": (list, None), "frames": (bool, None)}
# Minari's reminders about provenance fields a worldsim export has no value for.
_UNSET_WARNINGS = r"`(author|author_email|code_permalink|eval_env)` is set to None|env_spec is None"
_EXPORT_TMP = ".worldsim-export-"
_ROOT_ENV = "MINARI_DATASETS_PATH"


class MinariMissing(MissingExtra):
    """The optional `minari` package is not installed."""

    def __init__(self):
        super().__init__("Minari datasets", "the minari package", "minari")


def _minari() -> Any:
    try:
        import minari  # optional dependency
        import minari.namespace  # optional dependency
    except ImportError as exc:
        raise MinariMissing() from exc
    return minari


def check_minari_name(name: str) -> str:
    """`name` if it is a Minari dataset id with a version; a ValueError saying what is expected if not."""
    m = NAME_RE.fullmatch(name) if isinstance(name, str) else None
    if m is None or (m["namespace"] is not None and len(m["namespace"]) < 2):
        raise ValueError(f"bad Minari dataset name {name!r}: {NAME_HELP}")
    return name


@contextmanager
def _minari_root(root: str | Path | None) -> Iterator[None]:
    """Point Minari at `root` (None: the root MINARI_DATASETS_PATH names, if any). Minari reads its root
    from that variable on every call and takes no path argument."""
    old = os.environ.get(_ROOT_ENV)
    root = root if root is not None else old
    if root is not None:  # absolute: Minari joins a relative root onto paths it has already joined it to
        os.environ[_ROOT_ENV] = os.path.abspath(root)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(_ROOT_ENV, None)
        else:
            os.environ[_ROOT_ENV] = old


def _remove_stale(parent: Path, prefix: str) -> None:
    """Remove the temporary directories that killed runs left in `parent` (named PREFIX + PID)."""
    if not parent.is_dir():
        return
    for p in parent.iterdir():
        pid = p.name[len(prefix) :]
        if p.name.startswith(prefix) and pid.isdigit() and not pid_alive(int(pid)):
            remove_tree(p)


def _complete_manifest(root: Path) -> dict[str, Any]:
    m = read_manifest(root)
    if not m["complete"]:
        raise ValueError(f"{root}: dataset is incomplete; rerun the generate command to resume it before exporting")
    return m


def _native_shards(root: Path, manifest: dict[str, Any], frames: bool) -> Iterator[list[tuple[int, int, dict]]]:
    """Each shard's episodes as (episode, reset seed, arrays), in episode order, every shard checked
    against its manifest record (the SHA-256 too: an export publishes the data)."""
    keys = [k for k in NATIVE_KEYS if frames or k != "frames"]
    expected = 0
    for name, rec in sorted(manifest["shards"].items(), key=lambda item: item[1]["first_episode"]):
        path = root / name
        problem = shard_problem(path, rec, verify=True)
        if problem is not None:
            raise ValueError(f"{path}: shard listed in the manifest is {problem}; rerun `worldsim data generate` with "
                             "the same arguments and --verify to regenerate it")
        try:
            with h5py.File(path, "r") as f:
                groups = sorted(f["episodes"].values(), key=lambda g: int(g.attrs["episode"]))
                episodes = [(int(g.attrs["episode"]), int(g.attrs["reset_seed"]), {k: g[k][()] for k in keys})
                            for g in groups]
        except (OSError, KeyError) as exc:
            raise ValueError(f"{path}: corrupt or unreadable shard ({exc})") from exc
        for ep, _, _ in episodes:
            if ep != expected:
                raise ValueError(f"{path}: holds episode {ep} where episode {expected} belongs")
            expected += 1
        yield episodes


def _env_spec(manifest: dict[str, Any]) -> Any:
    """Gymnasium's spec of the scene's own env (whose observations the states are), truncating where
    the dataset does; None for a scene Gymnasium does not know."""
    if manifest["scene"] not in gymnasium.envs.registry or manifest["scene_options"]:
        return None
    return dataclasses.replace(gymnasium.spec(manifest["scene"]), max_episode_steps=manifest["max_steps"])


def _spaces(manifest: dict[str, Any]) -> tuple[gymnasium.spaces.Box, gymnasium.spaces.Box]:
    obs = gymnasium.spaces.Box(-np.inf, np.inf, (manifest["state_dim"],), np.float64)
    act = gymnasium.spaces.Box(np.asarray(manifest["action_low"], np.float32),
                               np.asarray(manifest["action_high"], np.float32), dtype=np.float32)
    return obs, act


def _write_minari(minari: Any, root: Path, name: str, manifest: dict[str, Any], frames: bool) -> tuple[int, int]:
    """Write the dataset at `root` as Minari dataset `name` (in the Minari root now set); (episodes, steps)."""
    obs_space, act_space = _spaces(manifest)
    m = manifest
    text = (f"worldsim {m['scene']} dataset: {m['episodes']} episodes of the {m['policy']} policy, seed {m['seed']}. "
            "Observations are the scene's states; infos hold " + ("frame, " if frames else "") +
            "physics_state, contacts and energy; metadata['worldsim'] holds the worldsim manifest.")
    data, episodes, steps = None, 0, 0
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_UNSET_WARNINGS, category=UserWarning)
        for shard in _native_shards(root, manifest, frames):
            buffers = [minari.data_collector.EpisodeBuffer(
                id=ep, seed=seed, observations=a["states"], actions=a["actions"], rewards=a["rewards"],
                terminations=a["terminated"], truncations=a["truncated"],
                infos={key: a[native] for key, native in INFOS.items() if native in a}) for ep, seed, a in shard]
            if data is None:
                data = minari.create_dataset_from_buffers(
                    name, buffers, env=_env_spec(manifest), observation_space=obs_space, action_space=act_space,
                    algorithm_name=f"worldsim {m['policy']} policy", description=text)
            else:
                data.update_dataset_from_buffer(buffers)
            episodes += len(shard)
            steps += sum(len(a["actions"]) for _, _, a in shard)
    data.storage.update_metadata({METADATA_KEY: {"format": MINARI_FORMAT, "frames": frames, "manifest": manifest}})
    return episodes, steps


def export_minari(data_dir: str | Path, name: str, minari_root: str | Path | None = None,
                  frames: bool = True) -> dict[str, Any]:
    """Write the complete dataset at `data_dir` as Minari dataset `name` (see the module docstring).

    Args:
        minari_root: the Minari datasets root; None: Minari's own (MINARI_DATASETS_PATH, else
            ~/.minari/datasets).
        frames: include the frames (when the dataset has them); False: states and the rest only.

    Returns {"name", "path", "episodes", "steps", "frames"}. Refuses (ValueError) a bad name, an
    incomplete or corrupt dataset, and a name Minari already holds.
    """
    check_minari_name(name)
    minari = _minari()
    root = Path(data_dir)
    manifest = _complete_manifest(root)
    manifest["frames"] = manifest.get("frames", True)  # a manifest without the field is of a rendered dataset
    frames = bool(frames and manifest["frames"])
    with _minari_root(minari_root):
        base = Path(os.path.abspath(minari.storage.get_dataset_path()))
    target = base / name
    if target.exists():
        raise ValueError(f"Minari dataset {name} already exists ({target}); refusing to replace it: choose another "
                         f"name or version, or remove it first (`minari delete {name}`)")
    _remove_stale(base, _EXPORT_TMP)
    tmp = base / f"{_EXPORT_TMP}{os.getpid()}"  # hidden: Minari lists no dot directories
    remove_tree(tmp)
    try:
        with _minari_root(tmp):
            episodes, steps = _write_minari(minari, root, name, manifest, frames)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(tmp / name, target)
        except OSError as exc:
            raise ValueError(f"Minari dataset {name} appeared at {target} while exporting; left it alone") from exc
        namespace = NAME_RE.fullmatch(name)["namespace"]
        with _minari_root(base):
            if namespace is not None and namespace not in minari.namespace.list_local_namespaces():
                minari.namespace.create_namespace(namespace)
        fsync_dir(target.parent)
    finally:
        remove_tree(tmp)
    return {"name": name, "path": str(target), "episodes": episodes, "steps": steps, "frames": frames}


def _carried(data: Any, name: str) -> dict[str, Any]:
    """The worldsim metadata of Minari dataset `name`, its fields checked; a ValueError if it has none."""
    meta = data.storage.metadata.get(METADATA_KEY)
    where = f"Minari dataset {name}"
    if not isinstance(meta, dict) or not isinstance(meta.get("manifest"), dict):
        raise ValueError(f"{where} was not written by `worldsim data export` (no '{METADATA_KEY}' manifest in its "
                         "metadata): only such datasets carry the physics states, contacts and scene config a worldsim "
                         "dataset holds")
    if meta.get("format") != MINARI_FORMAT or not isinstance(meta.get("frames"), bool):
        raise ValueError(f"{where}: expected worldsim metadata format {MINARI_FORMAT}, got {meta.get('format')!r} "
                         f"(frames {meta.get('frames')!r}); export it again with this worldsim")
    m = meta["manifest"]
    for key, (kind, least) in {**_FIELDS, **_MORE_FIELDS}.items():
        _get(where, m, key, kind, least, label="manifest.")
    if m["format_version"] != FORMAT_VERSION:
        raise ValueError(f"{where}: expected a manifest of format_version {FORMAT_VERSION}, got {m['format_version']}")
    if data.total_episodes != m["episodes"]:
        raise ValueError(f"{where} holds {data.total_episodes} episodes, its worldsim manifest {m['episodes']}: "
                         "episodes were added or removed after the export")
    return meta


def _check_scene(m: dict[str, Any], name: str, scene: str | None) -> None:
    """The dataset's scene is `scene` (when given), and this worldsim builds it with the recorded config."""
    if scene is not None and scene != m["scene"]:
        raise ValueError(f"Minari dataset {name} holds episodes of scene {m['scene']!r}, not {scene!r}")
    with make_scene(m["scene"], m["width"], m["height"], **m["scene_options"]) as built:
        here, digest = built.config(), built.config_hash()
    if digest != m["scene_config_hash"]:
        theirs = m.get("scene_config", {})
        diffs = [f"{k}: dataset {theirs.get(k)!r}, here {here.get(k)!r}" for k in sorted(set(theirs) | set(here))
                 if theirs.get(k) != here.get(k)]
        raise ValueError(f"Minari dataset {name} was made with another {m['scene']} scene config (hash "
                         f"{m['scene_config_hash']}) than this worldsim builds ({digest}): "
                         + ("; ".join(diffs) or "the recorded config differs"))


def _native_episode(ep: Any, seed: Any, index: int, m: dict[str, Any], frames: bool, name: str) -> tuple:
    """(episode, reset seed, native arrays) of Minari episode `ep`, its shapes checked against the manifest."""
    where = f"Minari dataset {name}, episode {index}"
    want_seed = episode_seeds(m["seed"], index)[0]
    if ep.id != index or seed != want_seed:
        raise ValueError(f"{where}: has id {ep.id} and reset seed {seed!r}, where a worldsim dataset of seed "
                         f"{m['seed']} has episode {index} with reset seed {want_seed}: episodes were reordered or "
                         "replaced after the export")
    L, infos = len(ep.rewards), ep.infos or {}
    shapes = {"frames": (L + 1, m["height"], m["width"], 3), "states": (L + 1, m["state_dim"]),
              "physics": (L + 1, m["physics_dim"]), "contacts": (L + 1, len(m["contact_pairs"])), "energy": (L + 1,),
              "actions": (L, m["action_dim"]), "rewards": (L,), "terminated": (L,), "truncated": (L,)}
    source = {"states": ep.observations, "actions": ep.actions, "rewards": ep.rewards, "terminated": ep.terminations,
              "truncated": ep.truncations, **{native: infos.get(key) for key, native in INFOS.items()}}
    arrays = {}
    for k in NATIVE_KEYS if frames else NATIVE_KEYS[1:]:
        label = next((f"infos['{key}']" for key, native in INFOS.items() if native == k), k)
        a = np.asarray(source[k]) if source[k] is not None else None
        if a is None or a.shape != shapes[k]:
            got = "none" if a is None else f"shape {a.shape}"
            raise ValueError(f"{where}: {label}: expected shape {shapes[k]}, got {got}")
        arrays[k] = a.astype(NATIVE_DTYPES[k], copy=False)
    return index, int(seed), arrays


def _write_native(data: Any, meta: dict[str, Any], out: Path, frames: bool, name: str) -> dict[str, Any]:
    """Write Minari dataset `data` as a native dataset directory `out` (new); its manifest."""
    m = dict(meta["manifest"], frames=frames, shards={}, complete=False)
    m.pop("stats", None)
    out.mkdir(parents=True)
    n, size = m["episodes"], m["shard_size"]
    for index in range((n + size - 1) // size):
        ids = list(range(index * size, min(n, (index + 1) * size)))
        seeds = [e.get("seed") for e in data.storage.get_episode_metadata(ids)]
        episodes = [_native_episode(ep, seed, i, m, frames, name)
                    for ep, seed, i in zip(data.iterate_episodes(ids), seeds, ids)]
        path = out / shard_name(index)
        write_shard(path, index, ids[0], episodes)
        m["shards"][path.name] = describe_shard(path)
    m["stats"] = _stats(m["shards"])
    m["complete"] = True
    m["imported_from"] = {"minari": name, "minari_version": data.minari_version}
    write_manifest(out, m)
    return read_manifest(out)  # the checks any reader makes, before the directory gets its name


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"--out {out} exists and is not an empty directory; refusing to write into it")
    base = nearest_existing(out)
    if not base.is_dir():
        raise ValueError(f"--out {out}: {base} exists and is not a directory")
    check_writable(out, "--out")


def import_minari(name: str, out: str | Path, scene: str | None = None, frames: bool | None = None,
                  minari_root: str | Path | None = None) -> dict[str, Any]:
    """Write Minari dataset `name` (one `export_minari` wrote) as a native dataset at `out`, which must
    be absent or empty; `EpisodeDataset(out)` then reads it.

    Args:
        scene: the scene the episodes must be of (None: any scene this worldsim builds with the
            dataset's config).
        frames: True: the frames are needed (a dataset without them is refused); False: leave them
            out; None: keep them when the dataset has them.
        minari_root: the Minari datasets root; None: Minari's own.

    Returns {"out", "scene", "episodes", "steps", "frames", "identical", "changed"}: "identical" says
    whether every shard is byte for byte the one exported; "changed" names the shards that are not (a
    warning says so too). A Minari root that does not exist is refused (a ValueError), not created.
    """
    check_minari_name(name)
    minari = _minari()
    out = Path(os.path.abspath(out))
    _check_out(out)
    given = minari_root if minari_root is not None else os.environ.get(_ROOT_ENV)
    if given is not None and not Path(given).is_dir():  # Minari would create it, then find nothing in it
        raise ValueError(f"Minari root {given}: no such directory (--minari-root or {_ROOT_ENV})")
    with _minari_root(minari_root):
        try:
            data = minari.load_dataset(name)
        except FileNotFoundError as exc:
            root = minari.storage.get_dataset_path()
            raise ValueError(f"no Minari dataset {name} in {root} (the Minari root: --minari-root or "
                             f"{_ROOT_ENV})") from exc
    meta = _carried(data, name)
    m = meta["manifest"]
    _check_scene(m, name, scene)
    if frames and not meta["frames"]:
        raise ValueError(f"Minari dataset {name} has no frames (infos['frame']): it was exported without them or "
                         "from a --no-frames dataset; import it with --no-frames for state-only uses")
    keep = meta["frames"] if frames is None else bool(frames)
    out.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{out.name}.tmp-"
    _remove_stale(out.parent, prefix)
    tmp = out.parent / f"{prefix}{os.getpid()}"
    remove_tree(tmp)
    try:
        written = _write_native(data, meta, tmp, keep, name)
        os.rename(tmp, out)  # replaces an empty directory; refuses one something was written into meanwhile
        fsync_dir(out.parent)
    finally:
        remove_tree(tmp)
    # The export recorded each shard's SHA-256: a shard rebuilt from the same episodes has the same bytes.
    same = keep == m["frames"]
    changed = sorted(k for k, r in written["shards"].items() if r["sha256"] != m["shards"].get(k, {}).get("sha256"))
    if same and changed:
        warnings.warn(f"Minari dataset {name}: {', '.join(changed)} differ from the SHA-256 its export recorded, so "
                      f"its episodes were changed after the export (or another HDF5 version wrote them); {out} "
                      f"holds the episodes as they are now", UserWarning, stacklevel=2)
    return {"out": str(out), "scene": m["scene"], "episodes": written["episodes"], "steps": written["stats"]["steps"],
            "frames": keep, "identical": same and not changed, "changed": changed if same else []}
