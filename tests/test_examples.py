"""The examples run end to end with tiny budgets."""

import importlib.util
import json
from pathlib import Path

import pytest

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
    assert (out / "world" / "policy.safetensors").is_file() and (out / "real" / "policy.safetensors").is_file()
    assert json.loads((out / "results.json").read_text())["settings"]["steps"] == 32
