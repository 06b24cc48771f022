import numpy as np
import pytest

from worldsim.core.video import side_by_side


def test_side_by_side_panels_and_difference():
    rng = np.random.default_rng(0)
    pred = rng.integers(0, 256, (3, 16, 32, 3), dtype=np.uint8)
    true = rng.integers(0, 256, (3, 16, 32, 3), dtype=np.uint8)
    out = side_by_side(pred, true)
    assert out.shape == (3, 16, 96, 3) and out.dtype == np.uint8
    assert np.array_equal(out[:, :, :32], pred) and np.array_equal(out[:, :, 32:64], true)
    assert np.array_equal(out[:, :, 64:], np.abs(pred.astype(int) - true.astype(int)).astype(np.uint8))
    assert not side_by_side(true, true)[:, :, 64:].any()


def test_side_by_side_bad_inputs():
    a = np.zeros((2, 16, 16, 3), np.uint8)
    with pytest.raises(TypeError, match="uint8"):
        side_by_side(a.astype(np.float32), a)
    with pytest.raises(ValueError, match="shapes differ"):
        side_by_side(a, a[:1])
    with pytest.raises(ValueError, match=r"\[T, H, W, 3\]"):
        side_by_side(a[0], a[0])
