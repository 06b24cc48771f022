"""`worldsim play`: the keyboard's actions, a headless session recorded to mp4, and the live window
under SDL's dummy video driver."""

import os
from types import SimpleNamespace

import imageio.v3 as iio
import numpy as np
import pytest

from worldsim.cli import main
from worldsim.cli.play import Driver, PlayWindow, keyboard_action
from worldsim.eval.paired_session import PairedSession


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, tiny_world):
    return str(tiny_world(tmp_path_factory.mktemp("wm") / "reacher"))


def test_keys_push_action_components_to_their_bounds():
    low, high = np.array([-1.0, -2.0, 0.0]), np.array([1.0, 2.0, 4.0])
    np.testing.assert_array_equal(keyboard_action(set(), low, high), [0, 0, 2])
    np.testing.assert_array_equal(keyboard_action({"right", "down", "a"}, low, high), [1, -2, 0])
    np.testing.assert_array_equal(keyboard_action({"left", "right", "d"}, low, high), [0, 0, 4])


def test_headless_play_records_the_session(ckpt, tmp_path, capsys):
    out = tmp_path / "play.mp4"
    assert main(["play", "--checkpoint", ckpt, "--policy", "scripted:0.1", "--headless", "--steps", "4",
                 "--out", str(out), "--scale", "1", "--device", "cpu"]) == 0
    assert iio.imread(out).shape == (5, 64, 192, 3)
    assert "4 steps of Reacher-v5" in capsys.readouterr().out
    assert main(["play", "--checkpoint", ckpt, "--headless", "--out", str(out), "--device", "cpu"]) == 2
    assert main(["play", "--checkpoint", ckpt, "--policy", "zero", "--headless", "--device", "cpu"]) == 2


def test_the_live_window_steps_on_keys(ckpt, monkeypatch):
    pygame = pytest.importorskip("pygame")
    monkeypatch.setitem(os.environ, "SDL_VIDEODRIVER", "dummy")
    session = PairedSession("Reacher-v5", ckpt, "cpu")
    try:
        args = SimpleNamespace(seed=3, fps=1000.0, scale=2, steps=2)
        PlayWindow(pygame, session, Driver(None, session), args).run(max_frames=4)
        assert session.t == 2  # the episode's steps, then it waits for R or Esc
    finally:
        session.close()


def test_a_new_episode_starts_the_policy_again_from_its_seed(ckpt):
    """R (and the first episode) reset the policy with the episode: its noise and the controller's
    phase start from the seed, so an episode replays as it did."""
    session = PairedSession("Reacher-v5", ckpt, "cpu")
    try:
        driver = Driver("scripted:0.3", session)
        runs = []
        for seed in (4, 5, 4):
            driver.reset(seed)
            actions = []
            for _ in range(3):
                actions.append(driver.act(set()))
                session.step(actions[-1])
            runs.append(np.stack(actions))
        np.testing.assert_array_equal(runs[0], runs[2])
        assert not np.array_equal(runs[0], runs[1])
    finally:
        session.close()


def test_play_fails_on_its_arguments_before_loading_a_world(capsys, monkeypatch):
    monkeypatch.setattr("worldsim.cli.play.PairedSession", None)  # loading a world would fail loudly
    assert main(["play", "--headless", "--policy", "zero", "--out", "x.gif"]) == 2
    assert main(["play", "--headless", "--out", "x.mp4"]) == 2
    assert "pass --policy" in capsys.readouterr().err
