import numpy as np
import pytest
import torch

from worldsim.core.runtime import resolve_device, seed_everything


def test_auto_device_is_cuda_only_when_present():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize("bad", ["tpu", "gpu0", "", "mps"])
def test_bad_device_names_the_value(bad):
    with pytest.raises(ValueError, match="device"):
        resolve_device(bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a CPU-only machine")
def test_cuda_without_cuda_is_an_error():
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")


def test_seed_everything_repeats():
    g1 = seed_everything(7)
    a = (torch.rand(3), np.random.rand(3), g1.random(3))
    g2 = seed_everything(7)
    b = (torch.rand(3), np.random.rand(3), g2.random(3))
    for x, y in zip(a, b):
        assert np.array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("bad", [-1, 1.5, "3", True])
def test_seed_everything_rejects_bad_seeds(bad):
    with pytest.raises((TypeError, ValueError), match="seed"):
        seed_everything(bad)
