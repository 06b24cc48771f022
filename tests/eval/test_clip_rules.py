"""The abnormal-clip rules: MuJoCo's own frames pass; a ball that vanishes, splits, changes colour or
passes through a wall is caught."""

import numpy as np
import pytest

from worldsim.envs.registry import make_scene
from worldsim.eval.clip_rules import RULES, PixelMap, abnormal, frame_flags


@pytest.fixture(scope="module")
def clip():
    scene = make_scene("bounce")
    scene.reset(seed=5)
    frames = [scene.render()]
    for _ in range(30):
        scene.step(np.zeros(1))
        frames.append(scene.render())
    states = scene.state()
    return scene, np.stack(frames), states


def test_mujoco_frames_are_normal_and_the_pixel_map_finds_the_balls(clip):
    scene, frames, _ = clip
    pixels = PixelMap.for_scene(scene)
    assert 30 < pixels.ball_area < 42
    got = abnormal(frames, 3, pixels)
    assert set(got) == {*RULES, "abnormal"} and not got["abnormal"], got


def _paint(frames, colour, rows, cols):
    f = frames.copy()
    f[:, rows, cols] = colour
    return f


def test_each_rule_is_caught(clip):
    scene, frames, _ = clip
    pixels = PixelMap.for_scene(scene)
    grey = frames[0, 0, 0]
    red = (frames[..., 0].astype(int) - frames[..., 1] > 100) & (frames[..., 0] > 150)
    gone = frames.copy()
    gone[red] = grey
    assert abnormal(gone, 3, pixels)["vanishes"]
    twice = _paint(frames, (230, 38, 38), slice(40, 47), slice(40, 47))
    assert abnormal(twice, 3, pixels)["splits"]
    recoloured = frames.copy()
    recoloured[red] = (38, 190, 50)
    got = abnormal(recoloured, 3, pixels)
    assert got["changes colour"] and got["vanishes"]
    outside = gone.copy()
    outside[:, 20:27, 0:4] = (230, 38, 38)  # its centre beyond the left wall's inside face
    assert abnormal(outside, 3, pixels)["through a wall"]
    # One frame alone is not enough with persist=2
    blink = frames.copy()
    blink[5][red[5]] = grey
    assert not abnormal(blink, 3, pixels)["vanishes"] and abnormal(blink, 3, pixels, persist=1)["vanishes"]
    assert frame_flags(frames, 3, pixels).shape == (31, 3, len(RULES))
