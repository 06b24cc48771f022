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
