"""`worldsim play`: the keyboard's actions, a headless session recorded to mp4, and the live window
under SDL's dummy video driver."""

import os
import subprocess
import sys
import textwrap
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


def test_headless_play_refuses_an_existing_file_unless_forced(ckpt, tmp_path, capsys):
    notes = tmp_path / "notes.mp4"
    notes.write_text("notes")
    argv = ["play", "--checkpoint", ckpt, "--policy", "zero", "--headless", "--steps", "2", "--scale", "1",
            "--device", "cpu", "--out", str(notes)]
    assert main(argv) == 2
    assert "exists; refusing to overwrite it" in capsys.readouterr().err and notes.read_text() == "notes"
    assert main([*argv, "--force"]) == 0
    assert iio.imread(notes).shape == (3, 64, 192, 3) and sorted(p.name for p in tmp_path.iterdir()) == ["notes.mp4"]


@pytest.mark.parametrize("flags, code, message", [
    (["--out", "/sys/x.mp4"], 1, "--out '/sys/x.mp4' cannot be written"),
    (["--out", "OUT", "--scale", "100"], 2, "makes 6400x19200 px frames; the H.264 encoder takes at most 16384"),
    (["--out", "OUT", "--fps", "-5"], 2, "--fps: expected a number > 0, got '-5'"),
    (["--out", "OUT", "--fps", "0"], 2, "--fps: expected a number > 0, got '0'"),
    (["--out", "OUT", "--steps", "0"], 2, "--steps: expected an int >= 1, got '0'"),
])
def test_bad_video_arguments_fail_before_the_world_loads(ckpt, tmp_path, capsys, monkeypatch, flags, code, message):
    monkeypatch.setattr("worldsim.cli.play.PairedSession", None)  # loading a world would fail loudly
    flags = [str(tmp_path / "x.mp4") if f == "OUT" else f for f in flags]
    argv = ["play", "--checkpoint", ckpt, "--policy", "zero", "--headless", *flags]
    try:
        got = main(argv)
    except SystemExit as exc:  # argparse's own refusal of a flag's value
        got = exc.code
    assert got == code and message in capsys.readouterr().err
    assert not (tmp_path / "x.mp4").exists()


def test_headless_play_ends_each_episode_at_its_end(ckpt, tmp_path, capsys):
    """Reacher truncates at 50 steps: the returns stop there and the next seed's episode starts."""
    out = tmp_path / "play.mp4"
    assert main(["play", "--checkpoint", ckpt, "--policy", "zero", "--headless", "--steps", "53", "--out", str(out),
                 "--scale", "1", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "53 steps of Reacher-v5 in 2 episode(s)" in printed
    assert printed.count("(truncated at step 50)") == 2 and printed.count("(unfinished at step 3)") == 2
    assert "seed 0:" in printed and "seed 1:" in printed
    assert iio.imread(out).shape[0] == 1 + 53 + 1  # each episode's first frame, then one a step


def test_returns_count_each_side_up_to_its_own_end(tmp_path, tiny_world):
    ck = tiny_world(tmp_path / "pendulum", scene="InvertedPendulum-v5", state_dim=4, action_dim=1)
    session = PairedSession("InvertedPendulum-v5", str(ck), "cpu")
    try:
        session.reset(0)
        real, world = [], []
        for _ in range(30):
            r = session.step(np.array([3.0]))
            real.append(r["real_reward"])
            world.append(r["world_reward"])
        end = session.real_end
        assert end is not None and end < 30 and session.world_end is None and not session.episode_over
        assert session.returns["real"] == pytest.approx(sum(real[:end]))
        assert session.returns["world"] == pytest.approx(sum(world))
    finally:
        session.close()


def test_play_without_a_display_says_so_at_once(capsys, monkeypatch):
    monkeypatch.setattr("worldsim.cli.play.PairedSession", None)  # loading a world would fail loudly
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert main(["play", "--policy", "zero"]) == 2
    err = capsys.readouterr().err
    assert "no display for the live window" in err and "worldsim play --headless" in err
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setenv("SDL_VIDEODRIVER", "offscreen")
    assert main(["play", "--policy", "zero"]) == 2
    assert "SDL_VIDEODRIVER=offscreen draws the live window nowhere" in capsys.readouterr().err


def test_an_interrupted_play_prints_one_line_about_play(tmp_path, capsys, monkeypatch):
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr("worldsim.cli.play.PairedSession", interrupted)
    assert main(["play", "--policy", "zero", "--headless", "--out", str(tmp_path / "x.mp4")]) == 130
    assert capsys.readouterr().err == "worldsim: error: interrupted\n"


def test_the_window_frees_its_renderers_before_sdl_quits(ckpt):
    """SDL's offscreen driver shares MuJoCo's EGL display and terminates it on quit: the renderers are freed
    first, so quitting (Esc, or Ctrl-C) prints no EGL tracebacks."""
    pytest.importorskip("pygame")
    script = textwrap.dedent(f"""
        import pygame
        from types import SimpleNamespace
        from worldsim.cli.play import Driver, PlayWindow
        from worldsim.eval.paired_session import PairedSession
        session = PairedSession("Reacher-v5", {ckpt!r}, "cpu")
        PlayWindow(pygame, session, Driver(None, session), SimpleNamespace(seed=0, fps=1000.0, scale=1, steps=2)
                   ).run(max_frames=2)
        session.close()
        print("done")
    """)
    env = {**os.environ, "SDL_VIDEODRIVER": "offscreen", "SDL_AUDIODRIVER": "dummy", "MUJOCO_GL": "egl"}
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0 and r.stdout.strip().endswith("done"), r.stderr
    assert "Traceback" not in r.stderr and "Exception ignored" not in r.stderr, r.stderr
