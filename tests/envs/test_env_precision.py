"""`precision=` on the envs and `--precision` on the CLI: the world runs in what was asked ("auto" as the
hardware allows), a bad name is refused before any model loads, and reports say which precision ran."""

import json

import gymnasium as gym
import pytest

import worldsim.envs  # noqa: F401
import worldsim.envs.world_batch as world_batch
from worldsim.cli import main
from worldsim.core.precision import resolve_precision


def test_env_precision_argument(tiny_world, tmp_path, monkeypatch):
    path = tiny_world(tmp_path / "w")
    env = gym.make("DSV4World-v0", scene="Reacher-v5", checkpoint=str(path), precision="bf16", obs_type="dict")
    assert env.unwrapped.precision == "bf16"
    env.reset(seed=0)
    obs, *_ = env.step(env.action_space.sample())
    assert obs["pixels"].shape == (64, 64, 3)
    env.close()
    env = gym.make("DSV4World-v0", scene="Reacher-v5", checkpoint=str(path), precision="auto")
    assert env.unwrapped.precision == resolve_precision("auto", "cpu")
    env.close()

    def never(*args, **kwargs):
        raise AssertionError("the model loaded before the precision was checked")

    monkeypatch.setattr(world_batch, "load_world_model", never)
    with pytest.raises(ValueError, match="precision must be one of"):
        gym.make("DSV4World-v0", scene="Reacher-v5", checkpoint=str(path), precision="half")


def test_eval_and_rollout_take_precision(tiny_world, tmp_path):
    path = str(tiny_world(tmp_path / "w"))
    out = tmp_path / "report"
    assert main(["eval", "--scene", "Reacher-v5", "--checkpoint", path, "--episodes", "2", "--horizon", "3",
                 "--no-video", "--quiet", "--precision", "bf16", "--out", str(out)]) == 0
    assert json.loads((out / "report.json").read_text())["inference_precision"] == "bf16"
    assert "the world in bf16" in (out / "report.md").read_text()
    assert main(["rollout", "--scene", "Reacher-v5", "--checkpoint", path, "--steps", "3", "--quiet",
                 "--precision", "bf16", "--out", str(tmp_path / "r.mp4")]) == 0
    assert (tmp_path / "r.mp4").stat().st_size > 0
