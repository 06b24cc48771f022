import numpy as np
import pytest

from worldsim.eval.metrics import code_usage, psnr, ssim


def rand_frames(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_psnr_known_values():
    a = np.zeros((2, 16, 16, 3), np.uint8)
    b = a.copy()
    b[1] = 10  # mse 100 -> 10*log10(255^2/100) = 28.13 dB
    out = psnr(b, a)
    assert out.shape == (2,)
    assert out[0] == 100.0
    assert out[1] == pytest.approx(10 * np.log10(255**2 / 100), rel=1e-6)


def test_ssim_matches_scikit_image():
    skm = pytest.importorskip("skimage.metrics")
    a = rand_frames((3, 64, 64, 3))
    noise = np.random.default_rng(1).integers(-40, 40, a.shape)
    b = np.clip(a.astype(int) + noise, 0, 255).astype(np.uint8)
    ours = ssim(b, a)
    theirs = [skm.structural_similarity(b[i], a[i], gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                        data_range=255, channel_axis=-1) for i in range(3)]
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)
    assert ssim(a, a) == pytest.approx(1.0)


def test_leading_dims_are_kept():
    a = rand_frames((2, 3, 32, 32, 3))
    assert psnr(a, a).shape == (2, 3) and ssim(a, a).shape == (2, 3)


def test_bad_inputs():
    a = rand_frames((2, 32, 32, 3))
    with pytest.raises(TypeError, match="uint8"):
        psnr(a.astype(np.float32), a)
    with pytest.raises(ValueError, match="shapes differ"):
        ssim(a, a[:1])
    with pytest.raises(ValueError, match=r"\[..., H, W, 3\]"):
        psnr(a[..., :2], a[..., :2])


def test_code_usage():
    assert code_usage(np.array([0, 1, 1, 3]), 8) == 0.375
    with pytest.raises(ValueError, match=r"codes must be in \[0, 8\)"):
        code_usage(np.array([8]), 8)


# --- state trajectories ------------------------------------------------------------------------------

from worldsim.eval.metrics import (  # noqa: E402
    at_horizons,
    count_components,
    event_scores,
    finite_difference_velocity,
    first_true,
    label_components,
    masked_step_mean,
    match_events,
    position_error,
    state_nrmse,
    termination_agreement,
    valid_horizon,
)


def test_state_nrmse_known_values():
    true = np.zeros((2, 3, 2))
    pred = true.copy()
    pred[1, :, 0] = 2.0  # error 2 in a dimension of std 2 -> normalised 1; the other dim exact
    out = state_nrmse(pred, true, std=np.array([2.0, 1.0]))
    assert out.shape == (2, 3)
    np.testing.assert_allclose(out[0], 0.0)
    np.testing.assert_allclose(out[1], np.sqrt(0.5))
    with pytest.raises(ValueError, match="std must have shape"):
        state_nrmse(pred, true, std=np.ones(3))


def test_valid_horizon_first_exceedance_bounded_by_length():
    e = np.array([[0.01, 0.05, 0.2, 0.01, 0.3],   # exceeds at step 3 -> 2 valid steps
                  [0.0, 0.0, 0.0, 0.0, 0.0],      # never -> the episode's length
                  [0.5, 0.0, 0.0, 0.0, 0.0],      # at once -> 0
                  [0.0, 0.0, np.nan, 0.0, 0.0]])  # NaN counts as exceeding
    np.testing.assert_array_equal(valid_horizon(e, 0.1), [2, 5, 0, 2])
    np.testing.assert_array_equal(valid_horizon(e, 0.1, lengths=np.array([1, 3, 5, 5])), [1, 3, 0, 2])
    assert valid_horizon(np.array([0.1]), 0.1) == 1  # equal to the threshold is still valid


def test_position_and_velocity_errors():
    p = np.array([[0.0, 0.0, 0.0], [3.0, 4.0, 0.0]])
    assert position_error(p, np.zeros_like(p)).tolist() == [0.0, 5.0]
    traj = np.array([[0.0], [0.5], [1.5]])
    np.testing.assert_allclose(finite_difference_velocity(traj, dt=0.5), [[1.0], [2.0]])


def test_at_horizons_and_step_means_skip_finished_episodes():
    x = np.array([[1.0, 2.0, 3.0], [5.0, 6.0, 7.0]])
    mask = np.array([[True, True, True], [True, False, False]])
    assert at_horizons(x, mask, [1, 2, 3]) == {1: 3.0, 2: 2.0, 3: 3.0}
    np.testing.assert_allclose(masked_step_mean(x, mask), [3.0, 2.0, 3.0])
    assert np.isnan(at_horizons(x, np.zeros_like(mask), [1])[1])


def test_match_events_one_to_one_nearest_first():
    n, err = match_events([10, 11, 30], [11, 40], window=3)
    assert n == 1 and err == [0]  # 11-11 pairs first, 10 has no partner left, 30 and 40 are too far apart
    n, err = match_events([5, 9], [6, 8], window=2)
    assert n == 2 and sorted(err) == [1, 1]
    assert match_events([], [3], window=2) == (0, [])


def test_event_scores_edge_cases():
    assert event_scores(4, 2, 2) == (0.5, 1.0, pytest.approx(2 / 3))
    assert event_scores(0, 0, 0) == (1.0, 1.0, 1.0)  # nothing to find, nothing claimed
    assert event_scores(0, 3, 0) == (0.0, 0.0, 0.0)  # copy-last: predicts no contact at all
    assert event_scores(2, 0, 0) == (0.0, 1.0, 0.0)


def test_first_true_and_termination_agreement():
    flags = np.array([[False, False, True, True], [False] * 4, [True, False, False, False]])
    np.testing.assert_array_equal(first_true(flags), [3, 5, 1])
    np.testing.assert_array_equal(first_true(flags, mask=np.array([[1, 1, 0, 0]] * 3, bool)), [5, 5, 1])
    pred, true = np.array([3, 5, 9, 101]), np.array([5, 9, 9, 101])
    np.testing.assert_array_equal(termination_agreement(pred, true, horizon=100, tolerance=2), [True, False, True, True])
    # Up to step 4 neither of the second pair has terminated: they agree so far.
    np.testing.assert_array_equal(termination_agreement(pred, true, horizon=4, tolerance=0), [False, True, True, True])


def test_components_are_8_connected_and_filtered_by_area():
    m = np.zeros((3, 8, 8), bool)
    m[0, 1:3, 1:3] = True
    m[0, 5:7, 5:7] = True  # two squares apart
    m[1, 1:3, 1:3] = True
    m[1, 3, 3] = True  # touches the square diagonally: one component
    m[2, 0, :] = True  # a line, then a single pixel
    m[2, 4, 4] = True
    np.testing.assert_array_equal(count_components(m), [2, 1, 2])
    np.testing.assert_array_equal(count_components(m, min_area=2), [2, 1, 1])
    lab = label_components(m[:1])
    assert len(np.unique(lab[lab > 0])) == 2 and (lab[~m[:1]] == 0).all()
    assert count_components(np.zeros((2, 3, 4, 4), bool)).shape == (2, 3)
