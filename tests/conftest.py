"""Shared test helpers: tolerances from the dtype, random arrays, hypothesis settings."""

import zlib

import numpy as np
import pytest
from hypothesis import settings

settings.register_profile("default", deadline=None, max_examples=40, derandomize=True)
settings.load_profile("default")

EQUATION_ATOL = 1e-12  # loop-level version vs vectorised, float64
TORCH_F64_ATOL = 1e-10  # torch oracle, float64
TORCH_F32 = dict(rtol=1e-5, atol=1e-6)  # torch oracle, float32


def assert_close(actual, expected, *, atol, rtol=0.0):
    """Shape first, then values; actual may come from any backend that to_numpy knows."""
    from transformer_np import to_numpy

    actual, expected = to_numpy(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape}"
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


@pytest.fixture
def rng(request):
    """A generator seeded from the test's name, so every test draws its own reproducible numbers."""
    return np.random.default_rng(zlib.crc32(request.node.name.encode()))


def randn(rng, *shape, dtype=np.float64):
    return rng.standard_normal(shape).astype(dtype)
