"""`worldsim models` and `worldsim scenes` list the shipped worlds, and the scenes that have none; a CLI
command that meets a scene without a world says to pass --checkpoint DIR."""

import json
import re

import pytest

from worldsim.cli import main
from worldsim.core.checkpoint import weights_sha256
from worldsim.core.registry import BASELINES, SHIPPED, resolve_checkpoint
from worldsim.envs import list_scenes
from worldsim.envs.world_batch import NoShippedWorld, load_world_model

WORLDS = {name: scene for scene, name in SHIPPED["world_model"].items()}
WORLDS |= {name: scene for by_scene in BASELINES.values() for scene, name in by_scene.items()}
NO_WORLD = [s for s in list_scenes() if s not in SHIPPED["world_model"]]


@pytest.fixture
def no_pusher_world(monkeypatch):
    """The registry without Pusher's worlds (shipped and baseline): a scene with a tokenizer and no world."""
    monkeypatch.delitem(SHIPPED["world_model"], "Pusher-v5")
    monkeypatch.delitem(BASELINES["mlp"], "Pusher-v5")


def test_models_lists_every_shipped_world(capsys):
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for name, scene in WORLDS.items():
        assert any(line.split()[:2] == [name, scene] for line in lines), name
    assert any("docs/evaluation.md" in line for line in lines)


def test_models_marks_a_scene_without_a_world(capsys, no_pusher_world):
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any("Pusher-v5" in line and "no world" in line and "--checkpoint DIR" in line for line in lines)


def test_models_json_reads_each_world_from_its_own_folder(capsys):
    assert main(["models", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    worlds = {w["name"]: w for w in listing["worlds"]}
    assert {n: w["scene"] for n, w in worlds.items()} == WORLDS
    for w in worlds.values():
        assert w["installed"] and w["params"] > 0 and w["bytes"] > 0 and w["preset"]
        assert w["training"] and all(run["steps"] for run in w["training"])
        # Figures are the config's own, or null: never made up.
        assert all(w[k] is None or isinstance(w[k], (int, float)) for k in ("pcs", "valid_horizon"))
    assert set(listing["scenes"]) == set(list_scenes())
    for scene in NO_WORLD:
        assert listing["scenes"][scene]["world"] is None
    assert listing["scenes"]["Pusher-v5"]["tokenizer"] == SHIPPED["tokenizer"]["Pusher-v5"]


def test_the_names_and_counts_models_prints_are_the_ones_info_takes_and_prints(capsys):
    assert main(["models", "--json"]) == 0
    worlds = {w["name"]: w for w in json.loads(capsys.readouterr().out)["worlds"]}
    for name in ("mlp-reacher", "world-reacher"):
        assert main(["info", worlds[name]["ref"], "--json"]) == 0
        info = json.loads(capsys.readouterr().out)
        assert info["kind"] == "world_model" and info["params_total"] == worlds[name]["params"]
    assert main(["info", "worldsim:tokenizer-reacher", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["kind"] == "tokenizer"
    # The figures say what they were scored under; no path from the machine a world was trained on shows.
    assert worlds["world-pendulum"]["scored_on"]["policy"] == "scripted"
    assert main(["models"]) == 0
    table = capsys.readouterr().out
    assert re.search(r"world-pendulum .* scripted, 240 steps", table) and not re.search(r"from /", table)
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    refs = set(re.findall(r"worldsim:[a-z0-9][a-z0-9-]*", capsys.readouterr().out))  # NAME: a placeholder
    assert refs and all(main(["info", ref, "--json"]) == 0 for ref in refs), refs


def test_scenes_say_whether_a_world_is_shipped(capsys, monkeypatch):
    assert main(["scenes", "--json"]) == 0
    rows = {r["scene"]: r for r in json.loads(capsys.readouterr().out)}
    assert {s: r["world"] for s, r in rows.items()} == {s: SHIPPED["world_model"].get(s) for s in list_scenes()}
    monkeypatch.delitem(SHIPPED["world_model"], "Pusher-v5")
    assert main(["scenes"]) == 0
    assert any(line.startswith("Pusher-v5") and "no world" in line for line in capsys.readouterr().out.splitlines())


def test_no_shipped_world_speaks_python_to_python_and_flags_to_the_cli(tmp_path, capsys, no_pusher_world):
    with pytest.raises(NoShippedWorld, match=r"checkpoint=DIR\)$"):
        load_world_model("Pusher-v5")
    assert main(["rollout", "--scene", "Pusher-v5", "--quiet", "--out", str(tmp_path / "x.mp4")]) == 2
    err = capsys.readouterr().err
    assert "no world model is shipped for scene 'Pusher-v5'" in err and "(--checkpoint DIR)" in err
    assert "checkpoint=DIR" not in err


@pytest.mark.slow
def test_an_export_carries_its_eval_reports_headline_figures(tmp_path, tiny_world, capsys, monkeypatch):
    """`export --eval-report` copies PCS and the valid horizon of the world's own report into its config,
    where `worldsim models` reads them. The report records the checkpoint it scored (its weights' SHA-256),
    and a report of another world (the mlp baseline's PCS once went into a transformer's config), of no
    recorded world, or of another scene is refused."""
    src = tiny_world(tmp_path / "w")
    assert main(["eval", "--scene", "Reacher-v5", "--checkpoint", str(src), "--episodes", "2", "--horizon", "6",
                 "--out", str(tmp_path / "rep"), "--no-video", "--quiet", "--device", "cpu"]) == 0
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert report["checkpoint"] == {"name": str(src), "path": str(src.resolve()), "weights_sha256": weights_sha256(src)}
    assert main(["export", str(src), "--out", str(tmp_path / "out"), "--eval-report", str(tmp_path / "rep")]) == 0
    figures = json.loads((tmp_path / "out" / "config.json").read_text())["extra"]["eval"]
    assert figures["pcs"] == report["pcs"] and figures["horizon"] == 6 and figures["episodes"] == 2
    assert figures["valid_horizon"] == report["metrics"]["valid_horizon"]["6"]
    assert figures["weights_sha256"] == weights_sha256(src)
    # The shipped mlp baseline's own report: figures of other weights, for the same scene.
    other = dict(report, checkpoint={"name": "worldsim:mlp-reacher", "path": "/x/mlp-reacher",
                                     "weights_sha256": weights_sha256(resolve_checkpoint("worldsim:mlp-reacher",
                                                                                         "world_model"))})
    for bad, match in [(other, r"scored another world: 'worldsim:mlp-reacher' \(/x/mlp-reacher, weights SHA-256"),
                       ({k: v for k, v in report.items() if k != "checkpoint"}, "does not record which world it "
                                                                                "scored"),
                       ({**report, "scene": "bounce"}, "not 'Reacher-v5'")]:
        (tmp_path / "rep" / "report.json").write_text(json.dumps(bad))
        assert main(["export", str(src), "--out", str(tmp_path / "out2"), "--eval-report", str(tmp_path / "rep")]) == 2
        err = capsys.readouterr().err
        assert re.search(match, err), err
        assert not (tmp_path / "out2").exists()  # refused before anything is written
