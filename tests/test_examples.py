"""The examples run end to end with tiny budgets."""

import importlib.util
import json
from pathlib import Path

import pytest
from stable_baselines3 import PPO

from worldsim.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_train_in_world_smoke(tmp_path, capsys, tiny_world):
    ckpt = tiny_world(tmp_path / "wm")
    out = tmp_path / "agents"
    summary = load("train_in_world").main([
        "--scene", "Reacher-v5", "--checkpoint", str(ckpt), "--steps", "32", "--num-envs", "2",
        "--episodes", "2", "--out", str(out), "--quiet", "--reward", "task"])
    printed = capsys.readouterr().out
    for name in ("world-trained", "random", "real-trained", "exploitation gap"):
        assert name in printed
    assert len(summary["world-trained"]["real"]) == 2 and len(summary["random"]["real"]) == 2
    for name in ("world", "real"):
        assert PPO.load(out / name / "agent.zip", device="cpu").observation_space.shape == (10,)
        assert json.loads((out / name / "settings.json").read_text())["algo"] == "ppo"
    assert main(["agent", "eval", str(out / "world" / "agent.zip"), "--episodes", "2", "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    # The same held-out seeds as the example's own scoring on the real env.
    assert scored["where"] == "MuJoCo" and scored["returns"] == pytest.approx(summary["world-trained"]["real"], rel=1e-4)
    # In the world it trained in, with its reward (both from settings.json), as the example scored it.
    assert main(["agent", "eval", str(out / "world" / "agent.zip"), "--world", "--episodes", "2", "--device", "cpu",
                 "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["where"] == f"world {ckpt}, task reward"
    assert scored["returns"] == pytest.approx(summary["world-trained"]["world"], abs=1e-3)
    assert json.loads((out / "results.json").read_text())["settings"]["steps"] == 32
