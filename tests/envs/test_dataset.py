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

from worldsim.cli import main
from worldsim.envs.dataset import GenerateSpec, generate
from worldsim.envs.loader import EpisodeDataset, WindowSampler
from worldsim.envs.manifest import read_manifest

ARRAYS = ("frames", "states", "physics", "contacts", "energy", "actions", "rewards", "terminated", "truncated")


def _spec(out, **kw):
    base = dict(scene="Reacher-v5", out=str(out), episodes=6, policy="mixed", seed=3, shard_size=2, max_steps=12)
    base.update(kw)
    return GenerateSpec(**base)


def _episodes(root):
    out = {}
    for shard in sorted(Path(root).glob("shard_*.h5")):
        with h5py.File(shard, "r") as f:
            for k, g in f["episodes"].items():
                out[k] = {a: g[a][()] for a in ARRAYS}
    return out


def assert_same_dataset(a, b):
    ea, eb = _episodes(a), _episodes(b)
    assert sorted(ea) == sorted(eb)
    for k in ea:
        for name in ARRAYS:
            np.testing.assert_array_equal(ea[k][name], eb[k][name], err_msg=f"episode {k} {name}")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("ref") / "ds"
    generate(_spec(root), progress_bar=False)
    return root


def test_layout_and_manifest(reference):
    m = read_manifest(reference)
    assert m["complete"] and m["episodes"] == 6 and len(m["shards"]) == 3
    for key in ("scene", "scene_config", "scene_config_hash", "policy", "seed", "versions"):
        assert key in m
    assert set(m["versions"]) >= {"mujoco", "gymnasium", "worldsim"}
    eps = _episodes(reference)
    e = eps["0000000"]
    L = len(e["actions"])
    assert e["frames"].shape == (L + 1, 64, 64, 3) and e["frames"].dtype == np.uint8
    assert e["states"].shape == (L + 1, 10) and e["physics"].shape == (L + 1, 8)
    assert e["truncated"][-1] and not e["terminated"].any()


@pytest.mark.slow
def test_same_seed_same_bytes_whatever_the_workers(reference, tmp_path):
    generate(_spec(tmp_path / "w2", workers=2), progress_bar=False)
    assert_same_dataset(reference, tmp_path / "w2")
    # The files themselves, byte for byte (shards are built in memory, then written).
    files = {p.name: p.read_bytes() for p in sorted(reference.glob("shard_*.h5"))}
    assert files == {p.name: p.read_bytes() for p in sorted((tmp_path / "w2").glob("shard_*.h5"))}
    assert read_manifest(tmp_path / "w2")["stats"] == read_manifest(reference)["stats"]


def test_dataset_episodes_replay_in_mujoco(reference):
    """The stored physics states and actions reproduce the stored states when replayed."""
    from worldsim.envs import make_scene

    e = _episodes(reference)["0000001"]
    with make_scene("Reacher-v5") as s:
        s.reset(physics_state=e["physics"][0])
        for t, a in enumerate(e["actions"]):
            s.step(a)
            np.testing.assert_allclose(s.physics_state(), e["physics"][t + 1], atol=1e-12)
            np.testing.assert_array_equal(s.render(), e["frames"][t + 1])


@pytest.mark.slow
def test_kill_and_resume_equals_an_uninterrupted_run(reference, tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "worldsim", "data", "generate", "--scene", "Reacher-v5", "--episodes", "6",
           "--policy", "mixed", "--seed", "3", "--shard-size", "2", "--max-steps", "12", "--out", str(out), "--quiet",
           "--workers", "1"]  # one worker: shards land one at a time, so a kill falls between them
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list(out.glob("shard_*.h5")) and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(list(out.glob("shard_*.h5")))
    assert 1 <= done_before < 3, "the run finished before it could be killed"
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert not list(out.glob("*.tmp-*"))
    assert read_manifest(out)["complete"]
    assert_same_dataset(reference, out)


def test_refuses_a_directory_made_for_another_config(reference):
    with pytest.raises(ValueError, match=r"another scene or config.*seed: directory has 3, asked for 4"):
        generate(_spec(reference, seed=4), progress_bar=False)
    with pytest.raises(ValueError, match=r"scene: directory has 'Reacher-v5', asked for 'bounce'"):
        generate(_spec(reference, scene="bounce"), progress_bar=False)


def test_refuses_a_foreign_non_empty_directory(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="non-empty directory without a manifest.json"):
        generate(_spec(tmp_path), progress_bar=False)


def test_rerun_of_a_complete_dataset_writes_nothing(reference):
    before = {p.name: p.stat().st_mtime_ns for p in reference.glob("shard_*.h5")}
    m = generate(_spec(reference), progress_bar=False)
    assert m["_generated_frames"] == 0
    assert before == {p.name: p.stat().st_mtime_ns for p in reference.glob("shard_*.h5")}


def test_extending_keeps_finished_shards(tmp_path, reference):
    root = tmp_path / "ext"
    generate(_spec(root, episodes=3), progress_bar=False)
    first = (root / "shard_00000.h5").stat().st_mtime_ns
    generate(_spec(root, episodes=6), progress_bar=False)
    assert (root / "shard_00000.h5").stat().st_mtime_ns == first
    assert_same_dataset(reference, root)


def test_corrupt_shard_is_named(reference, tmp_path):
    import shutil

    root = tmp_path / "bad"
    shutil.copytree(reference, root)
    shard = root / "shard_00001.h5"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"shard_00001.h5: corrupt shard"):
        EpisodeDataset(root)
    shard.write_bytes(bytes(data[:1000]))  # truncated: the size tells, even without the checksum
    with pytest.raises(ValueError, match=r"shard_00001.h5: corrupt shard \(wrong size"):
        EpisodeDataset(root, verify=False)
    shard.unlink()
    with pytest.raises(ValueError, match=r"shard_00001.h5: shard listed in manifest.json is missing; rerun"):
        EpisodeDataset(root, verify=False)


def test_windows_never_cross_episodes(reference):
    data = EpisodeDataset(reference)
    sampler = WindowSampler(data, T=5, seed=0)
    b = sampler.sample(64)
    assert b["frames"].shape == (64, 5, 64, 64, 3)
    for i in range(64):
        ep = data.episode(int(b["episode"][i]))
        s = int(b["start"][i])
        n = int(b["mask"][i].sum())
        assert n == 5  # every Reacher episode here is longer than the window
        np.testing.assert_array_equal(b["states"][i].numpy(), ep["states"][s : s + 5].astype(np.float32))
        np.testing.assert_array_equal(b["frames"][i].numpy(), ep["frames"][s : s + 5])


def test_windows_walk_every_start_once(reference):
    data = EpisodeDataset(reference)
    sampler = WindowSampler(data, T=5, seed=0, keys=("states",))
    assert sampler.num_windows == int(np.maximum(data.lengths - 4, 1).sum())
    b = sampler.windows(np.arange(sampler.num_windows))
    pairs = list(zip(b["episode"].tolist(), b["start"].tolist()))
    assert len(set(pairs)) == sampler.num_windows
    assert pairs == sorted(pairs)
    for bad in (np.array([-1]), np.array([sampler.num_windows]), np.zeros((2, 2), dtype=int)):
        with pytest.raises(ValueError, match="positions"):
            sampler.windows(bad)


def test_short_episodes_are_padded_and_masked(tmp_path):
    root = tmp_path / "pend"
    generate(GenerateSpec(scene="InvertedPendulum-v5", out=str(root), episodes=4, policy="random", seed=0,
                          shard_size=4), progress_bar=False)
    data = EpisodeDataset(root)
    assert data.lengths.max() < 30  # random actions drop the pole within a few steps
    b = WindowSampler(data, T=30, seed=1).sample(16)
    for i in range(16):
        L = int(data.lengths[int(b["episode"][i])])
        assert b["mask"][i].tolist() == [t < L for t in range(30)]
        assert b["act_mask"][i].tolist() == [t < L - 1 for t in range(30)]
        assert bool(b["terminated"][i, L - 2]), "the last action of a dropped pole terminates"
        assert not b["actions"][i, L - 1 :].any()
    # Runs of k frames with actions, inside one episode, by brute force over episodes of unequal length.
    for k in (1, 3, 100):
        want = [o + t for o, n in zip(data.offsets, data.lengths) for t in range(n - k)]
        assert data.action_frames(k).tolist() == want
    with pytest.raises(ValueError, match="run must be >= 1"):
        data.action_frames(0)


def test_held_out_episode_subset(reference):
    data = EpisodeDataset(reference, episodes=[4, 5])
    assert data.episode_ids.tolist() == [4, 5]


def test_data_info_cli(reference, capsys):
    assert main(["data", "info", str(reference), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["episodes"] == 6 and info["frames"] > 6 and len(info["state_std"]) == 10
    assert main(["data", "info", str(reference.parent)]) == 2
    assert "not a worldsim dataset" in capsys.readouterr().err


def test_bad_spec_values():
    with pytest.raises(ValueError, match="episodes must be an int >= 1, got 0"):
        GenerateSpec(scene="bounce", out="x", episodes=0)
    with pytest.raises(ValueError, match="unknown policy 'greedy'"):
        from worldsim.envs.policies import make_policy

        make_policy("greedy")


def test_no_frames_dataset_holds_the_same_episodes_without_frames(reference, tmp_path, capsys):
    root = tmp_path / "states"
    assert main(["data", "generate", "--scene", "Reacher-v5", "--episodes", "6", "--seed", "3", "--shard-size", "2",
                 "--max-steps", "12", "--workers", "1", "--no-frames", "--quiet", "--out", str(root)]) == 0
    m, ref = read_manifest(root), read_manifest(reference)
    assert m["frames"] is False and ref["frames"] is True
    assert m["stats"] == ref["stats"]  # the same physics: rendering changes nothing else
    with h5py.File(root / "shard_00000.h5", "r") as f:
        assert "frames" not in f["episodes"]["0000000"]
    ea, eb = _episodes(reference), {}
    for shard in sorted(root.glob("shard_*.h5")):
        with h5py.File(shard, "r") as f:
            eb.update({k: {a: g[a][()] for a in ARRAYS if a != "frames"} for k, g in f["episodes"].items()})
    assert sorted(ea) == sorted(eb)
    for k in ea:
        for name in eb[k]:
            np.testing.assert_array_equal(ea[k][name], eb[k][name], err_msg=f"episode {k} {name}")
    states = EpisodeDataset(root, frames=False)
    np.testing.assert_array_equal(states.arrays["states"], EpisodeDataset(reference, frames=False).arrays["states"])
    with pytest.raises(ValueError, match="has no frames .*--no-frames"):
        EpisodeDataset(root)
    capsys.readouterr()
    assert main(["data", "info", str(root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rendered"] is False


def test_frames_are_part_of_a_datasets_identity(reference, tmp_path):
    with pytest.raises(ValueError, match="frames: directory has True, asked for False"):
        generate(_spec(reference, frames=False), progress_bar=False)
    # A manifest written before the key existed meant a rendered dataset: it still resumes.
    import shutil

    old = tmp_path / "old"
    shutil.copytree(reference, old)
    m = json.loads((old / "manifest.json").read_text())
    del m["frames"]
    (old / "manifest.json").write_text(json.dumps(m))
    assert generate(_spec(old), progress_bar=False)["_generated_frames"] == 0
