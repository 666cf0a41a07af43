"""Blockwise (online-softmax) attention equals the plain scaled_dot_product_attention, forward and backward, on
random shapes, tile sizes that do and do not divide the lengths, causal / padding / combined masks and
grouped-query heads."""

import numpy as np
import pytest
from helpers import assert_close, numeric_grad
from hypothesis import given
from hypothesis import strategies as st

import transformer_np as tn
from transformer_np.core.attention import scaled_dot_product_attention_backward
from transformer_np.efficient.blockwise import (
    blockwise_attention,
    blockwise_attention_backward,
    blockwise_attention_forward,
)

pytestmark = pytest.mark.check  # the math check tier: `make check` (see the Makefile)


def draw_case(data, dtype=np.float64):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    H_kv = data.draw(st.integers(1, 3))
    H = H_kv * data.draw(st.integers(1, 3))
    T, S = data.draw(st.integers(1, 12)), data.draw(st.integers(1, 12))
    kind = data.draw(st.sampled_from(["none", "causal", "padding", "both"]))
    if kind in ("causal", "both"):
        S = max(S, T)
    q = rng.standard_normal((2, H, T, 4)).astype(dtype)
    k = rng.standard_normal((2, H_kv, S, 4)).astype(dtype)
    v = rng.standard_normal((2, H_kv, S, 3)).astype(dtype)
    mask = tn.causal_mask(T, S) if kind in ("causal", "both") else None
    if kind in ("padding", "both"):
        keep = rng.random((2, 1, 1, S)) > 0.3
        mask = keep if mask is None else mask & keep
    return q, k, v, mask, data.draw(st.integers(1, 13)), data.draw(st.integers(1, 13))


@given(st.data())
def test_blockwise_attention_equals_plain_attention_in_float64(data):
    q, k, v, mask, bq, bk = draw_case(data)
    want, _ = tn.scaled_dot_product_attention(q, k, v, mask=mask)
    assert_close(blockwise_attention(q, k, v, mask, bq, bk), want, atol=1e-12)


@given(st.data())
def test_blockwise_attention_equals_plain_attention_in_float32(data):
    q, k, v, mask, bq, bk = draw_case(data, np.float32)
    want, _ = tn.scaled_dot_product_attention(q, k, v, mask=mask)
    got = blockwise_attention(q, k, v, mask, bq, bk)
    assert got.dtype == np.float32
    assert_close(got, want, atol=1e-6)


@given(st.data())
def test_blockwise_backward_equals_the_plain_backward(data):
    q, k, v, mask, bq, bk = draw_case(data)
    want_out, w = tn.scaled_dot_product_attention(q, k, v, mask=mask)
    out, cache = blockwise_attention_forward(q, k, v, mask, bq, bk)
    dout = np.random.default_rng(0).standard_normal(out.shape)
    for got, want in zip(blockwise_attention_backward(dout, cache),
                         scaled_dot_product_attention_backward(dout, q, k, v, w)):
        assert_close(got, want, atol=1e-12)


def test_blockwise_backward_matches_finite_differences(rng):
    q, k, v = rng.standard_normal((1, 4, 5, 3)), rng.standard_normal((1, 2, 6, 3)), rng.standard_normal((1, 2, 6, 2))
    mask = tn.causal_mask(5, 6)
    out, cache = blockwise_attention_forward(q, k, v, mask, 2, 4)
    dout = rng.standard_normal(out.shape)
    grads = blockwise_attention_backward(dout, cache)
    for a, g in zip((q, k, v), grads):
        num = numeric_grad(lambda: float(np.sum(blockwise_attention(q, k, v, mask, 2, 4) * dout)), a)
        np.testing.assert_allclose(g, num, atol=1e-7)


def test_a_query_with_every_key_masked_gets_zero_and_zero_gradients(rng):
    q, k, v = rng.standard_normal((1, 2, 3, 4)), rng.standard_normal((1, 2, 5, 4)), rng.standard_normal((1, 2, 5, 4))
    mask = np.ones((3, 5), bool)
    mask[1] = False
    out, cache = blockwise_attention_forward(q, k, v, mask, 2, 2)
    assert np.all(out[:, :, 1] == 0) and np.all(np.isfinite(out))
    dq, dk, dv = blockwise_attention_backward(np.ones_like(out), cache)
    assert np.all(dq[:, :, 1] == 0) and np.all(np.isfinite(dk)) and np.all(np.isfinite(dv))


def test_bad_tile_sizes_are_rejected(rng):
    x = rng.standard_normal((1, 2, 3))
    with pytest.raises(ValueError, match="block_q must be a positive integer"):
        blockwise_attention(x, x, x, block_q=0)


def test_the_trace_holds_the_running_max_and_normaliser_after_each_tile(rng):
    s = rng.standard_normal(50) * 3
    trace = []
    blockwise_attention(np.ones((1, 1)), s[:, None], np.zeros((50, 1)), block_q=1, block_k=16, trace=trace)
    assert [stop for _, stop, _, _ in trace] == [16, 32, 48, 50]
    for _, stop, m, ell in trace:
        seen = s[:stop]
        np.testing.assert_allclose(m.reshape(()), seen.max())
        np.testing.assert_allclose(ell.reshape(()), np.exp(seen - seen.max()).sum(), rtol=1e-12)
