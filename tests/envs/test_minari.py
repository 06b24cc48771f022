"""A dataset exported to Minari opens with `minari.load_dataset` holding the same arrays, and imports
back to the same shards; bad names, existing datasets and other scenes are refused, and a failure
leaves nothing behind."""

import json
import shutil
import sys
from pathlib import Path

import gymnasium as gym
import h5py
import numpy as np
import pytest

minari = pytest.importorskip("minari")

from minari.data_collector import EpisodeBuffer  # noqa: E402

from worldsim.cli import main  # noqa: E402
from worldsim.envs.dataset import GenerateSpec, generate  # noqa: E402
from worldsim.envs.loader import EpisodeDataset  # noqa: E402
from worldsim.envs.manifest import read_manifest  # noqa: E402
from worldsim.envs.minari_io import check_minari_name, export_minari, import_minari  # noqa: E402

NAME = "worldsim/reacher-v0"
NATIVE = ("frames", "states", "physics", "contacts", "energy", "actions", "rewards", "terminated", "truncated")
# Minari episode field (or infos key) -> native array.
FIELDS = {"observations": "states", "actions": "actions", "rewards": "rewards", "terminations": "terminated",
          "truncations": "truncated"}
INFOS = {"frame": "frames", "physics_state": "physics", "contacts": "contacts", "energy": "energy"}


def _native(root):
    """{episode: (reset seed, arrays)} of a dataset directory, read straight from its shards."""
    out = {}
    for shard in sorted(Path(root).glob("shard_*.h5")):
        with h5py.File(shard, "r") as f:
            for g in f["episodes"].values():
                out[int(g.attrs["episode"])] = (int(g.attrs["reset_seed"]), {k: g[k][()] for k in NATIVE if k in g})
    return out


def _hidden(root):
    return sorted(p.name for p in Path(root).rglob(".*"))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("native") / "reacher"
    generate(GenerateSpec(scene="Reacher-v5", out=str(root), episodes=3, shard_size=2, max_steps=6, seed=5),
             progress_bar=False)
    return root


@pytest.fixture
def mroot(tmp_path, monkeypatch):
    root = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


def test_export_opens_in_minari_with_the_same_arrays(data, mroot, capsys):
    assert main(["data", "export", str(data), "--to", "minari", NAME, "--minari-root", str(mroot)]) == 0
    assert NAME in capsys.readouterr().out
    assert NAME in minari.list_local_datasets()
    ds = minari.load_dataset(NAME)
    native = _native(data)
    assert ds.total_episodes == len(native) == 3
    seeds = [m["seed"] for m in ds.storage.get_episode_metadata(range(3))]
    for ep in ds.iterate_episodes():
        seed, want = native[ep.id]
        assert seeds[ep.id] == seed
        for field, key in FIELDS.items():
            got = getattr(ep, field)
            assert got.dtype == want[key].dtype, field
            np.testing.assert_array_equal(got, want[key], err_msg=f"episode {ep.id} {field}")
        assert set(ep.infos) == set(INFOS)
        for info, key in INFOS.items():
            assert ep.infos[info].dtype == want[key].dtype, info
            np.testing.assert_array_equal(ep.infos[info], want[key], err_msg=f"episode {ep.id} infos[{info}]")
    meta = ds.storage.metadata["worldsim"]
    assert meta["format"] == 1 and meta["frames"] is True
    assert meta["manifest"] == read_manifest(data)
    assert ds.observation_space.shape == (10,) and ds.action_space.shape == (2,)
    env = ds.recover_environment()  # Gymnasium's own Reacher-v5, truncating where the data does
    assert env.spec.id == "Reacher-v5" and env.spec.max_episode_steps == 6
    env.close()
    assert _hidden(mroot) == []


def test_import_gives_back_the_same_shards(data, mroot, tmp_path, capsys):
    export_minari(data, NAME)
    out = tmp_path / "back"
    assert main(["data", "import", "--from", "minari", NAME, "--out", str(out), "--scene", "Reacher-v5"]) == 0
    assert "byte for byte" in capsys.readouterr().out
    for shard in sorted(data.glob("shard_*.h5")):
        assert (out / shard.name).read_bytes() == shard.read_bytes(), shard.name
    m, orig = read_manifest(out), read_manifest(data)
    assert m["stats"] == orig["stats"] and m["imported_from"]["minari"] == NAME
    assert {k: r["sha256"] for k, r in m["shards"].items()} == {k: r["sha256"] for k, r in orig["shards"].items()}
    a, b = EpisodeDataset(out), EpisodeDataset(data)
    assert sorted(a.arrays) == sorted(b.arrays)
    for k in a.arrays:
        np.testing.assert_array_equal(a.arrays[k], b.arrays[k], err_msg=k)
    assert _hidden(tmp_path) == []


def test_an_edited_minari_dataset_imports_with_a_warning(data, mroot, tmp_path, capsys):
    """The export recorded each shard's SHA-256: an episode changed after it is named on import."""
    export_minari(data, NAME)
    main_data = next((mroot / NAME).rglob("main_data.hdf5"))
    with h5py.File(main_data, "r+") as f:
        f["episode_2/rewards"][0] += 1.0
    out = tmp_path / "back"
    assert main(["data", "import", "--from", "minari", NAME, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith(f"worldsim: warning: Minari dataset {NAME}: shard_00001.h5 differ from the SHA-256 "
                                   "its export recorded") and captured.err.count("\n") == 1
    assert "byte for byte" not in captured.out
    with pytest.warns(UserWarning, match="shard_00001.h5 differ"):
        r = import_minari(NAME, tmp_path / "again")
    assert r["changed"] == ["shard_00001.h5"] and not r["identical"]


def test_import_from_a_minari_root_that_does_not_exist_creates_nothing(tmp_path, capsys):
    root = tmp_path / "nonexistent"
    assert main(["data", "import", "--from", "minari", NAME, "--out", str(tmp_path / "out"),
                 "--minari-root", str(root)]) == 2
    assert f"Minari root {root}: no such directory (--minari-root or MINARI_DATASETS_PATH)" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["reacher", "reacher-v", "reacher-vx", "../reacher-v0", "/reacher-v0",
                                  "a/reacher-v0", "ns//reacher-v0", "ns/reacher-v0/", "re.acher-v0", "", "ns/ -v0"])
def test_bad_names_are_refused_saying_what_is_expected(data, mroot, name, capsys):
    with pytest.raises(ValueError, match="expected 'namespace/name-vN' or 'name-vN'"):
        check_minari_name(name)
    assert main(["data", "export", str(data), "--to", "minari", name]) == 2
    assert "expected 'namespace/name-vN'" in capsys.readouterr().err
    assert not mroot.exists() or minari.list_local_datasets() == {}


@pytest.mark.parametrize("name", ["reacher-v0", "worldsim/reacher-v12", "a_b/c-d/reacher_x-v3", "ns/reacher-v1-v2"])
def test_good_names_pass(name):
    assert check_minari_name(name) == name


def test_an_unknown_format_is_refused(data, mroot, capsys):
    assert main(["data", "export", str(data), "--to", "rlds", NAME]) == 2
    assert "the one dataset format is minari" in capsys.readouterr().err


def test_an_existing_minari_dataset_is_never_replaced(data, mroot):
    export_minari(data, NAME)
    meta = mroot / NAME / "data" / "metadata.json"
    before = meta.read_bytes()
    with pytest.raises(ValueError, match="already exists.*refusing to replace it"):
        export_minari(data, NAME, frames=False)
    assert meta.read_bytes() == before and _hidden(mroot) == []


def test_a_failed_export_leaves_nothing(data, mroot, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(data, broken)
    with open(broken / "shard_00001.h5", "r+b") as fh:  # the second shard: the first is written by then
        fh.truncate(1000)
    with pytest.raises(ValueError, match="shard_00001.h5.*wrong size"):
        export_minari(broken, NAME)
    assert minari.list_local_datasets() == {}
    assert not (mroot / NAME).exists() and _hidden(mroot) == []


def test_another_scene_is_refused(data, mroot, tmp_path):
    export_minari(data, NAME)
    out = tmp_path / "back"
    with pytest.raises(ValueError, match="holds episodes of scene 'Reacher-v5', not 'bounce'"):
        import_minari(NAME, out, scene="bounce")
    # A scene config this worldsim does not build (as a dataset of another worldsim version would be).
    path = mroot / NAME / "data" / "metadata.json"
    meta = json.loads(path.read_text())
    meta["worldsim"]["manifest"]["scene_config"]["camera"]["distance"] = 1.5
    meta["worldsim"]["manifest"]["scene_config_hash"] = "0123456789abcdef"
    path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"another Reacher-v5 scene config .*camera: dataset"):
        import_minari(NAME, out)
    assert not out.exists() and _hidden(tmp_path) == []


def test_frames_left_out_and_frames_needed(data, mroot, tmp_path):
    export_minari(data, "reacher-states-v0", frames=False)
    ep = minari.load_dataset("reacher-states-v0")[0]
    assert "frame" not in ep.infos and set(ep.infos) == set(INFOS) - {"frame"}
    with pytest.raises(ValueError, match=r"has no frames \(infos\['frame'\]\)"):
        import_minari("reacher-states-v0", tmp_path / "needed", frames=True)
    assert not (tmp_path / "needed").exists()
    r = import_minari("reacher-states-v0", tmp_path / "states")
    assert r["frames"] is False and read_manifest(tmp_path / "states")["frames"] is False
    with pytest.raises(ValueError, match="dataset has no frames"):
        EpisodeDataset(tmp_path / "states")
    lean, full = EpisodeDataset(tmp_path / "states", frames=False), EpisodeDataset(data, frames=False)
    for k in full.arrays:
        np.testing.assert_array_equal(lean.arrays[k], full.arrays[k], err_msg=k)


def test_a_foreign_minari_dataset_is_refused(mroot, tmp_path):
    buf = EpisodeBuffer(id=0, seed=1, observations=np.zeros((3, 10)), actions=np.zeros((2, 2), np.float32),
                        rewards=np.zeros(2, np.float32), terminations=np.zeros(2, bool), truncations=np.ones(2, bool))
    with pytest.warns(UserWarning):  # Minari's reminders about unset provenance fields
        minari.create_dataset_from_buffers("other-v0", [buf], observation_space=gym.spaces.Box(-1, 1, (10,)),
                                           action_space=gym.spaces.Box(-1, 1, (2,)))
    with pytest.raises(ValueError, match="was not written by `worldsim data export`"):
        import_minari("other-v0", tmp_path / "back")
    with pytest.raises(ValueError, match="no Minari dataset missing-v0 in"):
        import_minari("missing-v0", tmp_path / "back")
    assert not (tmp_path / "back").exists()


def test_import_refuses_a_non_empty_out(data, mroot, tmp_path):
    export_minari(data, NAME)
    out = tmp_path / "notes"
    out.mkdir()
    (out / "todo.txt").write_text("mine")
    with pytest.raises(ValueError, match="not an empty directory"):
        import_minari(NAME, out)
    assert sorted(p.name for p in out.iterdir()) == ["todo.txt"]


def test_without_minari_the_command_says_what_to_install(data, mroot, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "minari", None)  # `import minari` raises ImportError
    assert main(["data", "export", str(data), "--to", "minari", NAME]) == 1
    assert "pip install 'worldsim[minari]'" in capsys.readouterr().err
