"""The compiled logarithms against NumPy's own (accuracy claims in kernels.py)."""

import numpy as np
from numba import njit

from subsetsearch.internal.kernels import _log


@njit
def _log_each(x):
    out = np.empty_like(x)
    for i in range(x.size):
        out[i] = _log(x[i])  # float32 -> _log_float32, float64 -> _log_float64
    return out


def test_float32_log_is_within_its_stated_error():
    x = np.concatenate([np.geomspace(1.2e-38, 1.0, 200_001), np.random.default_rng(0).random(100_000)])
    x = x.astype(np.float32)
    exact = np.log(x.astype(np.float64))
    error = np.abs(_log_each(x).astype(np.float64) - exact)
    assert (error <= 3e-7 * np.maximum(np.abs(exact), 1.0)).all()
    assert (error * x <= 5e-8).all()  # what one p log p term of an entropy can be off by


def test_float64_log_is_within_its_stated_error():
    x = np.concatenate([np.geomspace(1e-300, 1e300, 200_001), np.random.default_rng(1).random(100_000)])
    exact = np.log(x)
    error = np.abs(_log_each(x) - exact)
    assert (error <= 1e-15 * np.maximum(np.abs(exact), 1.0)).all()
    assert _log_each(np.array([1.0]))[0] == 0.0
