"""Shared test helpers: tolerances from the dtype, comparisons, random arrays.  (Imported as ``helpers``;
tests/conftest.py holds the fixtures and the hypothesis settings.)"""

import numpy as np

EQUATION_ATOL = 1e-12  # loop-level version vs vectorised, float64
TORCH_F64_ATOL = 1e-10  # torch oracle, float64
TORCH_F32 = dict(rtol=1e-5, atol=1e-6)  # torch oracle, float32


def assert_close(actual, expected, *, atol, rtol=0.0):
    """Shape first, then values; actual may come from any backend that to_numpy knows."""
    from transformer_np import to_numpy

    actual, expected = to_numpy(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape}"
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


def randn(rng, *shape, dtype=np.float64):
    return rng.standard_normal(shape).astype(dtype)
