"""One tolerance table per dtype for the kernel tests, each entry with the measurement behind it."""

import torch

# Measured 2026-11-29 under the interpreter at the test sizes, as max |kernel - reference| (and that over
# max |reference|); re-measure before changing an entry.
TOL = {
    # fp32: attention <= 1.4e-6 (5.5e-7), MoE <= 2.4e-6 on gradients up to ~10 (3.3e-7), gather/scatter
    # exact or 4e-6 on the gate gradient (a sum over D). Another summation order stays far below 1e-5.
    torch.float32: dict(atol=1e-5, rtol=1e-5),
    # fp16 inputs against the fp32 reference on the same inputs upcast: attention <= 9.3e-4 (6.0e-4),
    # MoE <= 3.7e-3 on dW up to ~10 (5.6e-4), gated scatter <= 2.8e-3 (4.5e-4): about one fp16 ulp of
    # the largest value (fp16 has 2^-11 = 4.9e-4 relative precision).
    torch.float16: dict(atol=5e-3, rtol=5e-3),
}


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype) -> None:
    torch.testing.assert_close(actual.float(), expected.float(), **TOL[dtype])
