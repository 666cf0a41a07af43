"""Token embedding and positional encodings — equation, properties, torch, bad input."""

import math

import numpy as np
import pytest
from helpers import EQUATION_ATOL, TORCH_F64_ATOL, assert_close, randn
from hypothesis import given
from hypothesis import strategies as st

import transformer_np as tn
from transformer_np.core import reference as ref

pytestmark = pytest.mark.check  # the math check tier: `make check` (see the Makefile)


@pytest.mark.parametrize("d_model", [8, 7, 32])
def test_sinusoidal_encoding_equals_loop_definition(d_model):
    got = tn.sinusoidal_positional_encoding(50, d_model, dtype=np.float64)
    assert got.shape == (50, d_model) and got.dtype == np.float64
    assert_close(got, ref.loop_positional_encoding(50, d_model), atol=EQUATION_ATOL)


def test_sinusoidal_encoding_is_float32_by_default():
    assert tn.sinusoidal_positional_encoding(4, 8).dtype == np.float32


def test_token_embedding_equals_loop_definition(rng):
    table, ids = randn(rng, 11, 6), rng.integers(0, 11, size=(2, 5))
    want = np.stack([ref.loop_token_embedding(row, table) for row in ids])
    assert_close(tn.token_embedding(ids, table), want, atol=EQUATION_ATOL)
    assert_close(tn.token_embedding(ids, table, scale=False), table[ids], atol=0)


@given(st.integers(1, 64).map(lambda n: 2 * n))
def test_encoding_is_bounded_and_each_row_has_squared_norm_d_over_2(d_model):
    pe = tn.sinusoidal_positional_encoding(200, d_model, dtype=np.float64)
    assert np.all(np.abs(pe) <= 1.0)
    np.testing.assert_allclose((pe * pe).sum(-1), d_model / 2, rtol=1e-12)


@given(st.integers(0, 40), st.integers(1, 30))
def test_shift_by_k_is_a_fixed_rotation_of_each_sin_cos_pair(pos, k):
    d = 16
    pe = tn.sinusoidal_positional_encoding(80, d, dtype=np.float64)
    inv_freq = 10000.0 ** (-np.arange(0, d, 2) / d)
    want = np.empty(d)
    for i, w in enumerate(inv_freq):  # M_k: one 2x2 rotation by angle k*w per (sin, cos) pair
        c, s = math.cos(k * w), math.sin(k * w)
        sin_p, cos_p = pe[pos, 2 * i], pe[pos, 2 * i + 1]
        want[2 * i], want[2 * i + 1] = c * sin_p + s * cos_p, c * cos_p - s * sin_p
    np.testing.assert_allclose(pe[pos + k], want, atol=1e-12)


def test_similarity_between_positions_depends_only_on_the_offset():
    pe = tn.sinusoidal_positional_encoding(100, 32, dtype=np.float64)
    dots = pe @ pe.T
    for k in (1, 5, 17):
        diag = np.diagonal(dots, offset=k)
        np.testing.assert_allclose(diag, diag[0], atol=1e-10)


def test_learned_positional_embedding_slices_rows_with_offset(rng):
    table = randn(rng, 10, 4)
    assert np.array_equal(tn.learned_positional_embedding(table, 3, offset=2), table[2:5])
    with pytest.raises(ValueError, match="exceeds the positional table's max_len 10"):
        tn.learned_positional_embedding(table, 9, offset=2)


def test_embedding_matches_torch(rng):
    torch = pytest.importorskip("torch")
    table, ids = randn(rng, 11, 6), rng.integers(0, 11, size=(3, 4))
    want = torch.nn.functional.embedding(torch.from_numpy(ids), torch.from_numpy(table)).numpy() * math.sqrt(6)
    assert_close(tn.token_embedding(ids, table), want, atol=TORCH_F64_ATOL)


@pytest.mark.parametrize("bad, message", [
    (np.array([[1, -1]]), r"ids must lie in \[0, 11\) \(vocabulary size 11\), got values in \[-1, 1\]"),
    (np.array([[3, 11]]), r"ids must lie in \[0, 11\)"),
    (np.array([[0.0, 1.0]]), "ids must have an integer dtype"),
])
def test_out_of_range_or_non_integer_ids_are_rejected(rng, bad, message):
    with pytest.raises((ValueError, TypeError), match=message):
        tn.token_embedding(bad, randn(rng, 11, 4))


def test_bad_sizes_are_rejected():
    with pytest.raises(ValueError, match="d_model must be a positive integer, got 0"):
        tn.sinusoidal_positional_encoding(5, 0)
    with pytest.raises(ValueError, match="max_len must be a positive integer"):
        tn.sinusoidal_positional_encoding(-1, 4)
