"""The shipped bounce world keeps its three balls through the 240-step demo (`make demo`: seed 0, the
smooth behaviour policy): every decoded frame shows each ball exactly once."""

import numpy as np
import pytest

from worldsim.envs import make_scene
from worldsim.eval import physics as P
from worldsim.eval.paired import model_rollout, record_truth
from worldsim.model import WorldModel


# Measured 2026-12-07: the shipped bounce world's frames, trained on its frozen physics, lose a ball in
# every frame of the demo; strict, so a world that keeps its balls makes this test fail until the
# marker goes.
@pytest.mark.xfail(strict=True, reason="the shipped bounce world's frames lose its red and green balls")
@pytest.mark.slow
def test_no_ball_vanishes_or_splits_in_the_bounce_demo():
    wm = WorldModel.from_pretrained("bounce").eval()
    truth = record_truth(make_scene("bounce"), episodes=1, horizon=240, seed=0, policy="smooth")
    pred = model_rollout(wm, truth)
    counts = P.count_balls(pred.frames[:, 1:], truth.states.shape[-1] // 4)  # [1, 240, 3]
    assert (P.count_balls(truth.frames[:, 1:], 3) == 1).all()  # MuJoCo's own frames show each ball once
    bad = np.flatnonzero((counts != 1).any(-1)[0])
    assert bad.size == 0, f"{bad.size} of 240 frames lose or split a ball, the first at step {bad[:1] + 1}"
