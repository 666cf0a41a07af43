"""Fixtures and hypothesis settings for the tests (helpers live in tests/helpers.py)."""

import zlib

import numpy as np
import pytest
from hypothesis import settings

settings.register_profile("default", deadline=None, max_examples=40, derandomize=True)
settings.load_profile("default")


@pytest.fixture
def rng(request):
    """A generator seeded from the test's name, so every test draws its own reproducible numbers."""
    return np.random.default_rng(zlib.crc32(request.node.name.encode()))
