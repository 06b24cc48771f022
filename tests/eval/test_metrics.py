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
