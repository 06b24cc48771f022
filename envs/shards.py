"""Writing a dataset's files atomically and durably: HDF5 shards built in memory, the manifest, and
the temporary files a killed run leaves behind.

A file is written beside its place as `NAME.tmp-PID`, fsynced and renamed, so a reader sees the whole
file or none; a full disk raises one `OSError` naming the file and the free space.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from worldsim.envs.manifest import FORMAT_VERSION, MANIFEST

# Temporary files a killed run leaves behind, hidden (dot) ones included.
PARTIAL_NAME = re.compile(r"\.?(manifest\.json|shard_\d{5,}\.h5)\.tmp-\d+")
_DISK_FULL = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded"}


def fill_shard(f: h5py.File, index: int, first: int, episodes: list[tuple[int, int, dict[str, np.ndarray]]]) -> None:
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
        fill_shard(f, index, first, episodes)
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


def write_manifest(root: Path, manifest: dict[str, Any]) -> None:
    write_file(root / MANIFEST, (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode())


def remove_partial(root: Path) -> None:
    for p in root.iterdir():
        if PARTIAL_NAME.fullmatch(p.name):
            p.unlink(missing_ok=True)
