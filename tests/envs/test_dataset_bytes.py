"""A shard's bytes are a function of its episodes alone: not of the process that wrote it, what that
process did before, h5py's global settings or the integer types passed in; so a dataset killed and
resumed at any point is byte for byte the uninterrupted one."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from worldsim.envs import shards

# Two workers over four shards of two short rendered episodes: the pool writes the early shards and
# a resume with one shard left writes it in the main process.
GENERATE = ["data", "generate", "--scene", "InvertedPendulum-v5", "--episodes", "8", "--policy", "smooth", "--seed",
            "9001", "--workers", "2", "--shard-size", "2", "--max-steps", "20", "--quiet"]
NUM_SHARDS = 4


def _episodes(seed_type=int):
    rng = np.random.default_rng(0)
    return [(e, seed_type(1000 + e), {
        "frames": rng.integers(0, 4, (6, 16, 16, 3), dtype=np.uint8) * 60,
        "states": rng.normal(size=(6, 3)), "actions": rng.normal(size=(5, 1)).astype(np.float32),
        "terminated": np.zeros(5, bool)}) for e in range(3)]


def test_shard_bytes_ignore_h5py_defaults_and_integer_types(tmp_path):
    shards.write_shard(tmp_path / "a.h5", 1, 4, _episodes())
    config = h5py.get_config()
    saved = config.track_order
    config.track_order = True  # a process-wide default any library may set
    try:
        shards.write_shard(tmp_path / "b.h5", np.int64(1), np.int32(4), _episodes(np.uint32))
    finally:
        config.track_order = saved
    time.sleep(1.1)  # a timestamp anywhere in the file would now differ
    shards.write_shard(tmp_path / "c.h5", 1, 4, _episodes())
    a = (tmp_path / "a.h5").read_bytes()
    assert (tmp_path / "b.h5").read_bytes() == a
    assert (tmp_path / "c.h5").read_bytes() == a


def test_frames_use_a_deterministic_compressor(tmp_path):
    """LZF leaves its hash table uninitialised: its output depends on the writing process's stack."""
    shards.write_shard(tmp_path / "a.h5", 0, 0, _episodes())
    with h5py.File(tmp_path / "a.h5", "r") as f:
        frames = f["episodes/0000000/frames"]
        assert frames.compression == "gzip"
        assert (frames[()] == _episodes()[0][2]["frames"]).all()


def _run(out: Path, kill_when=None) -> bool:
    """Run `data generate` into `out`; with `kill_when(out)`, SIGKILL it and its workers once that holds.
    Returns whether it was killed before it finished."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    proc = subprocess.Popen([sys.executable, "-m", "worldsim", *GENERATE, "--out", str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        while kill_when is not None and proc.poll() is None:
            if out.is_dir() and kill_when(out):
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return True
            time.sleep(0.005)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, err[-2000:]
    return False


def _done(out: Path) -> int:
    return len(list(out.glob("shard_*.h5")))


KILL_POINTS = {
    "while the first shard is written": lambda out: any(".tmp-" in p.name and p.name.startswith("shard")
                                                        for p in out.iterdir()),
    "after one shard": lambda out: _done(out) >= 1,
    "with one shard left": lambda out: _done(out) >= NUM_SHARDS - 1,
}


def _content(out: Path) -> tuple[dict, dict]:
    """The shards' bytes and the manifest less its timings (how long each shard took to write)."""
    m = json.loads((out / "manifest.json").read_text())
    for rec in m["shards"].values():
        rec.pop("seconds", None)
    return {p.name: p.read_bytes() for p in sorted(out.glob("shard_*.h5"))}, m


@pytest.mark.slow
def test_a_dataset_killed_at_any_point_resumes_byte_identical(tmp_path):
    _run(tmp_path / "ref")
    ref_shards, ref_manifest = _content(tmp_path / "ref")
    assert len(ref_shards) == NUM_SHARDS
    killed = []
    for i, (point, when) in enumerate(KILL_POINTS.items()):
        out = tmp_path / f"run{i}"
        if _run(out, when):
            killed.append(point)
        _run(out)  # the rerun resumes
        got_shards, got_manifest = _content(out)
        assert got_shards.keys() == ref_shards.keys(), point
        for name in ref_shards:
            assert got_shards[name] == ref_shards[name], f"{name} differs after a kill {point}"
        assert got_manifest == ref_manifest, point
    assert len(killed) >= 2, f"only killed {killed}: the run finished before the other kill points"
