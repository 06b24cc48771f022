"""What `data generate` / `data info` / the loader do with bad arguments, bad shards, bad manifests,
full disks and unwritable directories."""

import errno
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from worldsim.cli import main
from worldsim.envs import dataset, shards
from worldsim.envs.dataset import GenerateSpec, generate
from worldsim.envs.loader import EpisodeDataset
from worldsim.envs.manifest import dataset_status, read_manifest

# Frames are not the point of these tests: state-only datasets cost no rendering.
BASE = dict(scene="Reacher-v5", episodes=8, policy="mixed", seed=3, shard_size=2, max_steps=12, frames=False)
CLI = ["data", "generate", "--scene", "Reacher-v5", "--episodes", "8", "--seed", "3", "--shard-size", "2",
       "--max-steps", "12", "--workers", "1", "--quiet"]


def _spec(out, **kw):
    return GenerateSpec(**(BASE | {"out": str(out)} | kw))


def _shard_bytes(root):
    return {p.name: p.read_bytes() for p in sorted(Path(root).glob("shard_*.h5"))}


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    root = tmp_path_factory.mktemp("ref") / "ds"
    generate(_spec(root), progress_bar=False)
    return root


@pytest.fixture
def copy(ref, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(ref, root)
    return root


def _edit_manifest(root, edit):
    m = json.loads((root / "manifest.json").read_text())
    edit(m)
    (root / "manifest.json").write_text(json.dumps(m))


def _mount_tmpfs(where: Path, options: str) -> None:
    where.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")


@pytest.fixture
def tmpfs(tmp_path):
    """A tmpfs of 600 KiB (skipped where mounting is not permitted), unmounted afterwards."""
    where = tmp_path / "fs"
    _mount_tmpfs(where, "size=600k")
    yield where
    subprocess.run(["umount", "-l", str(where)], check=False)


# --- 1. every argument checked before anything is written ---------------------------------------


def test_bad_policy_or_size_writes_nothing_and_the_corrected_run_succeeds(tmp_path, capsys):
    out = tmp_path / "new"
    assert main([*CLI, "--no-frames", "--policy", "nosuch", "--out", str(out)]) == 2
    assert "unknown policy 'nosuch'" in capsys.readouterr().err
    assert not out.exists()
    # Sizes that are no multiple of 16, and sizes no renderer can draw (checked on one probe frame).
    for size in ("17", "65536"):
        assert main([*CLI, "--episodes", "1", "--size", size, "--out", str(out)]) == 2
        assert size in capsys.readouterr().err
        assert not out.exists()
    assert main([*CLI, "--no-frames", "--out", str(out)]) == 0
    assert read_manifest(out)["complete"]
    # A bad argument on a rerun leaves the existing dataset untouched.
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.iterdir()}
    assert main([*CLI, "--no-frames", "--policy", "nosuch", "--out", str(out)]) == 2
    assert before == {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.iterdir()}


# --- 2. listed shards verified, bad ones regenerated --------------------------------------------


def test_missing_truncated_flipped_and_unlisted_bad_shards_are_regenerated(ref, copy):
    s0, s1, s2, s3 = (copy / f"shard_{i:05d}.h5" for i in range(4))
    s0.write_bytes(s0.read_bytes()[: s0.stat().st_size // 2])  # truncated
    s1.unlink()  # missing
    data = bytearray(s2.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes: only the SHA-256 tells
    s2.write_bytes(bytes(data))
    # Renamed into place but never listed (a kill before the manifest said so), then truncated.
    _edit_manifest(copy, lambda m: [m["shards"].pop(s3.name), m.pop("stats"), m.update(complete=False)])
    s3.write_bytes(s3.read_bytes()[:500])

    m = generate(_spec(copy), progress_bar=False)
    assert m["_generated_frames"] > 0 and sorted(m["_regenerated"]) == [s0.name, s1.name, s3.name]
    got, want = _shard_bytes(copy), _shard_bytes(ref)
    assert [got[n] == want[n] for n in sorted(want)] == [True, True, False, True]  # sizes checked, not hashes
    m = generate(_spec(copy), progress_bar=False, verify=True)
    assert m["_regenerated"] == [s2.name]
    assert _shard_bytes(copy) == want
    new, old = read_manifest(copy), read_manifest(ref)
    assert new["stats"] == old["stats"]
    assert {k: (r["sha256"], r["bytes"]) for k, r in new["shards"].items()} == \
        {k: (r["sha256"], r["bytes"]) for k, r in old["shards"].items()}
    assert generate(_spec(copy), progress_bar=False, verify=True)["_regenerated"] == []


# --- 3. data info names missing and corrupt shards ----------------------------------------------


def test_data_info_names_missing_and_corrupt_shards(ref, copy, capsys):
    assert main(["data", "info", str(ref), "--verify", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["complete"] is True and info["bad_shards"] == {} and info["verified"] is True

    (copy / "shard_00001.h5").unlink()
    s2 = copy / "shard_00002.h5"
    data = bytearray(s2.read_bytes())
    data[100] ^= 0x01
    s2.write_bytes(bytes(data))
    s3 = copy / "shard_00003.h5"
    s3.write_bytes(s3.read_bytes() + b"x")
    assert main(["data", "info", str(copy), "--json"]) == 1
    info = json.loads(capsys.readouterr().out)
    assert info["complete"] is False and info["verified"] is False
    assert info["bad_shards"] == {"shard_00001.h5": "missing", "shard_00003.h5": "wrong size"}
    assert main(["data", "info", str(copy), "--json", "--verify"]) == 1
    assert json.loads(capsys.readouterr().out)["bad_shards"] == {
        "shard_00001.h5": "missing", "shard_00002.h5": "wrong sha256", "shard_00003.h5": "wrong size"}
    assert main(["data", "info", str(copy)]) == 1
    text = capsys.readouterr().out
    assert "complete          False" in text
    assert "shard_00001.h5 (missing)" in text and "shard_00003.h5 (wrong size)" in text
    status = dataset_status(copy, verify=True)
    assert status["shards"]["shard_00000.h5"] == "ok" and not status["complete"]


# --- 4. a full disk stops cleanly -----------------------------------------------------------------


def _disk_full_after(monkeypatch, part: str, nbytes: int = 100, skip: int = 0):
    """Make os.write to temporary files whose name holds `part` fail with ENOSPC: the first `skip`
    calls go through (each writes one whole file), the next writes `nbytes`, and the rest fail."""
    real_write, calls = os.write, [0]

    def write(fd, data):
        name = os.readlink(f"/proc/self/fd/{fd}")
        if part not in name or ".tmp-" not in name:
            return real_write(fd, data)
        calls[0] += 1
        if calls[0] <= skip:
            return real_write(fd, data)
        if calls[0] == skip + 1:
            return real_write(fd, bytes(data[:nbytes]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", write)


def test_a_full_disk_while_writing_a_shard_stops_with_one_clear_error(ref, tmp_path, monkeypatch):
    root = tmp_path / "ds"
    _disk_full_after(monkeypatch, "shard_00001.h5")
    with pytest.raises(OSError) as info:
        generate(_spec(root), progress_bar=False)
    msg = str(info.value)
    assert info.value.errno == errno.ENOSPC
    assert f"no space left on device writing {root / 'shard_00001.h5'}" in msg
    assert "bytes free" in msg and str(root) in msg
    assert not list(root.glob("*.tmp-*"))
    assert (root / "shard_00000.h5").is_file() and not (root / "shard_00001.h5").exists()
    assert not read_manifest(root)["complete"]
    monkeypatch.undo()  # the disk is freed
    assert generate(_spec(root), progress_bar=False)["complete"]
    assert _shard_bytes(root) == _shard_bytes(ref)


def test_a_full_disk_while_writing_the_manifest_keeps_the_last_good_one(ref, tmp_path, monkeypatch):
    root = tmp_path / "ds"
    _disk_full_after(monkeypatch, "manifest.json", skip=2)  # the plan and the first shard's manifests land
    with pytest.raises(OSError, match=rf"no space left on device writing {root / 'manifest.json'} \(") as info:
        generate(_spec(root), progress_bar=False)
    assert info.value.errno == errno.ENOSPC
    assert not list(root.glob("*.tmp-*")) and not list(root.glob(".*.tmp-*"))
    assert list(read_manifest(root)["shards"]) == ["shard_00000.h5"]
    monkeypatch.undo()
    assert generate(_spec(root), progress_bar=False)["complete"]
    assert _shard_bytes(root) == _shard_bytes(ref)
    assert read_manifest(root)["stats"] == read_manifest(ref)["stats"]


@pytest.mark.slow
def test_a_real_full_disk_with_two_workers_exits_with_one_line(tmpfs):
    out = tmpfs / "ds"
    # Two shards of about 700 KB each (no frames, 2000 steps an episode): neither fits in 600 KiB.
    cmd = [sys.executable, "-m", "worldsim", "data", "generate", "--scene", "Reacher-v5", "--episodes", "4",
           "--shard-size", "2", "--max-steps", "2000", "--no-frames", "--workers", "2", "--quiet", "--out", str(out)]
    env = os.environ | {"MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode in (1, 2), r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "no space left on device writing" in r.stderr and "bytes free" in r.stderr
    assert not list(out.glob("*.tmp-*")) and not list(out.glob("shard_*.h5"))
    subprocess.run(["mount", "-o", "remount,size=8m", str(tmpfs)], check=True)
    cmd[cmd.index("--workers") + 1] = "1"
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert EpisodeDataset(out, frames=False).num_frames == 4 * 2001


# --- 5. an unwritable --out is refused before any work --------------------------------------------


def _no_scene(*args, **kwargs):
    raise AssertionError("a scene was made before --out was found unwritable")


def test_an_unwritable_out_is_refused_before_any_work(tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as root: a 0o500 directory is still writable")
        monkeypatch.setattr(dataset, "make_scene", _no_scene)
        for out in (locked, locked / "ds", locked / "a" / "b"):
            with pytest.raises(PermissionError, match=re.escape(f"--out {str(out)!r} cannot be written ({locked}: ")):
                generate(_spec(out), progress_bar=False)
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


def test_a_read_only_filesystem_is_refused_before_any_work(tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    _mount_tmpfs(ro, "ro,size=64k")
    try:
        monkeypatch.setattr(dataset, "make_scene", _no_scene)
        for out in (ro, ro / "ds"):
            with pytest.raises(OSError, match=re.escape(f"--out {str(out)!r} cannot be written ({ro}: ")) as info:
                generate(_spec(out), progress_bar=False)
            assert info.value.errno == errno.EROFS
    finally:
        subprocess.run(["umount", "-l", str(ro)], check=False)


# --- 6. manifest hardening -------------------------------------------------------------------------


TOP = ("scene", "scene_config_hash", "policy", "seed", "shard_size", "max_steps", "episodes", "width", "height",
       "state_dim", "action_dim", "shards", "complete", "versions")
RECORD = ("file", "sha256", "bytes", "first_episode", "num_episodes", "steps", "frames", "state_sum", "state_sqsum")


def _refused(root, edit, match):
    manifest = (root / "manifest.json").read_text()
    try:
        _edit_manifest(root, edit)
        with pytest.raises(ValueError, match=match):
            read_manifest(root)
        with pytest.raises(ValueError, match=match):
            EpisodeDataset(root, frames=False)
    finally:
        (root / "manifest.json").write_text(manifest)


def test_a_malformed_manifest_names_the_file_and_the_field(copy):
    path = str(copy / "manifest.json")
    for key in TOP:
        _refused(copy, lambda m, k=key: m.pop(k), rf"{path}: .*missing field '{key}'")
    for key in ("frames", "steps", "state_mean", "state_std"):
        _refused(copy, lambda m, k=key: m["stats"].pop(k), rf"{path}: .*missing field 'stats.{key}'")
    _refused(copy, lambda m: m.pop("stats"), rf"{path}: .*missing field 'stats'")
    for key in RECORD:
        _refused(copy, lambda m, k=key: m["shards"]["shard_00001.h5"].pop(k),
                 rf"{path}: .*shard_00001.h5.*missing field '{key}'")
    _refused(copy, lambda m: m.update(state_dim="10"), rf"{path}: state_dim: expected an int, got '10'")
    _refused(copy, lambda m: m.update(complete=1), rf"{path}: complete: expected a bool, got 1")
    _refused(copy, lambda m: m["shards"]["shard_00001.h5"].update(sha256="abc"), rf"{path}: .*sha256")
    # A manifest without `frames` is a rendered dataset.
    _edit_manifest(copy, lambda m: m.pop("frames"))
    assert read_manifest(copy)["complete"]


def test_shard_names_stay_inside_the_dataset(copy):
    path = str(copy / "manifest.json")

    def rename(old, new, file=None):
        def edit(m):
            rec = m["shards"].pop(old)
            m["shards"][new] = rec | {"file": file or new}
        return edit

    for bad in ("../../../other/shard_00002.h5", "/etc/shard_00002.h5", "shard_2.h5", "sub/shard_00002.h5",
                "shard_00002.h5.tmp-1"):
        _refused(copy, rename("shard_00002.h5", bad), rf"{path}: shard name {bad!r}")
    _refused(copy, rename("shard_00002.h5", "shard_00002.h5", "../shard_00002.h5"),
             rf"{path}: shard shard_00002.h5: file '../shard_00002.h5' differs from its name")


def test_tampered_stats_are_refused(copy):
    path = str(copy / "manifest.json")

    def stat(key, fn):
        return lambda m: m["stats"].update({key: fn(m["stats"][key])})

    _refused(copy, stat("state_std", lambda v: [0.0] * len(v)), rf"{path}: stats.state_std .*shard records")
    _refused(copy, stat("state_std", lambda v: [-v[0], *v[1:]]), rf"{path}: stats.state_std.*>= 0")
    _refused(copy, stat("state_mean", lambda v: v[:-1]), rf"{path}: stats.state_mean: expected 10 values, got 9")
    _refused(copy, stat("state_mean", lambda v: [float("nan"), *v[1:]]), rf"{path}: stats.state_mean.*finite")
    _refused(copy, stat("state_mean", lambda v: [v[0] + 1e-3, *v[1:]]), rf"{path}: stats.state_mean .*shard records")
    _refused(copy, stat("frames", lambda v: v + 1), rf"{path}: stats.frames is {{}}, but the shards hold".format(
        read_manifest(copy)["stats"]["frames"] + 1))
    _refused(copy, lambda m: m["shards"].pop("shard_00003.h5"), rf"{path}: .*complete.*episodes")


def test_a_resumed_multi_worker_run_has_the_uninterrupted_runs_stats(ref, copy):
    # A run killed with shards 0 and 2 unfinished; the resumed run finishes them last.
    for name in ("shard_00000.h5", "shard_00002.h5"):
        (copy / name).unlink()

    def killed(m):
        for name in ("shard_00000.h5", "shard_00002.h5"):
            del m["shards"][name]
        m["complete"] = False
        del m["stats"]

    _edit_manifest(copy, killed)
    generate(_spec(copy, workers=2), progress_bar=False)
    assert read_manifest(copy)["stats"] == read_manifest(ref)["stats"]
    assert list(json.loads((copy / "manifest.json").read_text())["shards"]) == [f"shard_{i:05d}.h5" for i in range(4)]


# --- shards built in memory --------------------------------------------------------------------


def test_a_shard_built_in_memory_has_the_bytes_h5py_writes_to_disk(ref, tmp_path):
    episodes = [(e, 7, {"states": np.full((3, 2), float(e)), "actions": np.ones((2, 1), np.float32),
                        "frames": np.full((3, 16, 16, 3), e, np.uint8)}) for e in range(2)]
    shards.write_shard(tmp_path / "a.h5", 0, 0, episodes)
    with h5py.File(tmp_path / "b.h5", "w", **shards.SHARD_FILE_OPTIONS) as f:
        shards.fill_shard(f, 0, 0, episodes)
    assert (tmp_path / "a.h5").read_bytes() == (tmp_path / "b.h5").read_bytes()
    assert not list(tmp_path.glob("*.tmp-*"))
