import numpy as np
import pytest

from worldsim.eval import score as S


def test_perfect_prediction_scores_100():
    mask = np.ones((2, 5), bool)
    comps = {"state": S.state_component(np.zeros((2, 5)), mask),
             "horizon": S.horizon_component(np.array([5, 5]), np.array([5, 5])),
             "frames": S.frames_component(np.full((2, 5), 100.0), mask), "contacts": 1.0}
    assert comps == {"state": 1.0, "horizon": 1.0, "frames": 1.0, "contacts": 1.0}
    assert S.physics_consistency_score(comps, {"termination": 1.0, "energy": 1.0}) == 100.0


def test_copy_last_like_prediction_scores_low():
    # A stale prediction: error about sqrt(2) data spreads, never valid, stale frames at ~20 dB, no contacts.
    mask = np.ones((4, 50), bool)
    comps = {"state": S.state_component(np.full((4, 50), 1.4), mask),
             "horizon": S.horizon_component(np.zeros(4), np.full(4, 50)),
             "frames": S.frames_component(np.full((4, 50), 20.5), mask), "contacts": 0.0}
    assert S.physics_consistency_score(comps, {"termination": 1.0}) < 5


def test_components_known_values():
    mask = np.array([[True, True, False]])
    assert S.state_component(np.array([[0.5, 0.0, 9.0]]), mask) == pytest.approx((np.exp(-1) + 1) / 2)
    assert S.state_component(np.array([[np.nan, 0.0, 0.0]]), mask) == pytest.approx(0.5)  # NaN scores 0
    assert S.frames_component(np.array([[30.0, 10.0, 50.0]]), mask) == pytest.approx(0.25)
    assert S.horizon_component(np.array([5, 0]), np.array([10, 0])) == pytest.approx(0.5)  # empty one left out
    assert S.horizon_component(np.array([2, 0]), np.array([4, 4])) == pytest.approx(0.25)


def test_formula_and_bad_terms():
    assert S.physics_consistency_score({"a": 0.5, "b": 1.0, "c": float("nan")}, {"p": 0.5}) == 37.5
    with pytest.raises(ValueError, match="at least one finite component"):
        S.physics_consistency_score({"a": float("nan")}, {})
    with pytest.raises(ValueError, match="'p' must lie in"):
        S.physics_consistency_score({"a": 0.5}, {"p": 1.5})
