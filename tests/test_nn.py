"""softmax, log-softmax, layer norm, activations, linear, residual, feed-forward — three ways each."""

import math

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from helpers import EQUATION_ATOL, TORCH_F32, TORCH_F64_ATOL, assert_close, randn
from hypothesis import given
from hypothesis import strategies as st

import transformer_np as tn
from transformer_np.core import reference as ref

pytestmark = pytest.mark.check  # the math check tier: `make check` (see the Makefile)

finite = st.floats(-30, 30, allow_nan=False, width=64)
rows = hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=6), elements=finite)


# --- (a) equation: loop-level versions ---------------------------------------------------------------
def test_softmax_equals_loop_definition(rng):
    x = randn(rng, 4, 7)
    assert_close(tn.softmax(x), np.stack([ref.loop_softmax(r) for r in x]), atol=EQUATION_ATOL)


def test_masked_softmax_equals_loop_definition(rng):
    x, mask = randn(rng, 5, 6), rng.random((5, 6)) > 0.4
    mask[2] = False  # a fully masked row
    want = np.stack([ref.loop_softmax(r, m) for r, m in zip(x, mask)])
    assert_close(tn.softmax(x, mask=mask), want, atol=EQUATION_ATOL)


def test_log_softmax_equals_log_of_loop_softmax(rng):
    x = randn(rng, 3, 9)
    assert_close(tn.log_softmax(x), np.log(np.stack([ref.loop_softmax(r) for r in x])), atol=EQUATION_ATOL)


def test_layer_norm_equals_loop_definition(rng):
    x, g, b = randn(rng, 5, 8), randn(rng, 8), randn(rng, 8)
    assert_close(tn.layer_norm(x, g, b, eps=1e-5), ref.loop_layer_norm(x, g, b, 1e-5), atol=EQUATION_ATOL)


def test_linear_equals_loop_definition(rng):
    x, w, b = randn(rng, 4, 6), randn(rng, 6, 3), randn(rng, 3)
    assert_close(tn.linear(x, w, b), ref.loop_linear(x, w, b), atol=EQUATION_ATOL)


@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_feed_forward_equals_loop_definition(rng, activation):
    x = randn(rng, 5, 8)
    p = dict(w1=randn(rng, 8, 12), b1=randn(rng, 12), w2=randn(rng, 12, 8), b2=randn(rng, 8))
    got = tn.feed_forward(x, **p, activation=activation)
    assert_close(got, ref.loop_feed_forward(x, **p, activation=activation), atol=EQUATION_ATOL)


def test_gelu_matches_math_erf_to_1e_7():
    x = np.linspace(-8, 8, 4001)
    want = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x])
    assert np.max(np.abs(tn.gelu(x) - want)) <= 1e-7


def test_erf_fallback_for_other_namespaces_matches_math_erf():
    from transformer_np.core.backend import _erf_standard

    x = np.linspace(-7, 7, 2801)
    err = np.max(np.abs(_erf_standard(x) - np.array([math.erf(v) for v in x])))
    assert err <= 1e-13, err


# --- (b) properties ----------------------------------------------------------------------------------
@given(rows)
def test_softmax_rows_sum_to_one(x):
    s = tn.softmax(x).sum(axis=-1)
    np.testing.assert_allclose(s, 1.0, rtol=0, atol=1e-12)


@given(rows, st.floats(-100, 100))
def test_softmax_is_shift_invariant(x, c):
    np.testing.assert_allclose(tn.softmax(x + c), tn.softmax(x), rtol=0, atol=1e-12)


def test_softmax_is_stable_for_huge_logits():
    x = np.array([[1000.0, 1000.0, -1000.0]], dtype=np.float32)
    np.testing.assert_allclose(tn.softmax(x), [[0.5, 0.5, 0.0]])
    assert np.all(np.isfinite(tn.log_softmax(x)))


def test_masked_entries_get_exactly_zero_and_fully_masked_rows_are_zero_not_nan(rng):
    x = randn(rng, 3, 4)
    mask = np.array([[True, False, True, False], [False] * 4, [True] * 4])
    w = tn.softmax(x, mask=mask)
    assert np.all(w[~mask] == 0.0)
    assert np.all(w[1] == 0.0) and np.all(np.isfinite(w))
    np.testing.assert_allclose(w[[0, 2]].sum(-1), 1.0, atol=1e-12)


@given(hnp.arrays(np.float64, (4, 6), elements=finite))
def test_layer_norm_rows_have_mean_zero_and_unit_variance_before_the_affine(x):
    x = x + np.linspace(0, 1, 6)  # keep rows from being constant
    y = tn.layer_norm(x, np.ones(6), np.zeros(6), eps=1e-12)
    np.testing.assert_allclose(y.mean(-1), 0.0, atol=1e-9)
    np.testing.assert_allclose(y.var(-1), 1.0, atol=1e-6)


def test_residual_with_zero_sublayer_is_identity(rng):
    x = randn(rng, 2, 3, 4)
    assert np.array_equal(tn.residual(x, np.zeros_like(x)), x)


def test_functions_keep_float32(rng):
    x = randn(rng, 3, 8, dtype=np.float32)
    g = np.ones(8, np.float32)
    for y in (tn.softmax(x), tn.log_softmax(x), tn.layer_norm(x, g, g), tn.gelu(x), tn.relu(x)):
        assert y.dtype == np.float32


# --- (c) torch oracle --------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_formulas_match_torch(rng, dtype):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x, g, b = randn(rng, 3, 5, 8, dtype=dtype), randn(rng, 8, dtype=dtype), randn(rng, 8, dtype=dtype)
    w = randn(rng, 8, 6, dtype=dtype)
    t = torch.from_numpy
    tol = dict(atol=TORCH_F64_ATOL) if dtype == np.float64 else TORCH_F32
    assert_close(tn.softmax(x), F.softmax(t(x), -1).numpy(), **tol)
    assert_close(tn.log_softmax(x), F.log_softmax(t(x), -1).numpy(), **tol)
    assert_close(tn.layer_norm(x, g, b, 1e-5), F.layer_norm(t(x), (8,), t(g), t(b), 1e-5).numpy(), **tol)
    assert_close(tn.gelu(x), F.gelu(t(x)).numpy(), **tol)
    assert_close(tn.relu(x), F.relu(t(x)).numpy(), **tol)
    assert_close(tn.linear(x, w, b[:6]), F.linear(t(x), t(w.T.copy()), t(b[:6])).numpy(), **tol)


# --- bad input ---------------------------------------------------------------------------------------
def test_integer_input_is_rejected_naming_the_argument():
    with pytest.raises(TypeError, match="x must have a real floating dtype"):
        tn.softmax(np.arange(3))


def test_layer_norm_rejects_wrong_width(rng):
    with pytest.raises(ValueError, match="x last dim"):
        tn.layer_norm(randn(rng, 2, 5), np.ones(4), np.zeros(4))


def test_linear_rejects_wrong_width(rng):
    with pytest.raises(ValueError, match=r"x last dim \(= w.shape\[0\] = 4\) must be 4, got shape \(2, 5\)"):
        tn.linear(randn(rng, 2, 5), randn(rng, 4, 3))


def test_unknown_activation_is_rejected(rng):
    with pytest.raises(ValueError, match="activation must be one of"):
        tn.feed_forward(randn(rng, 2, 4), randn(rng, 4, 4), None, randn(rng, 4, 4), None, activation="tanh")


def test_residual_rejects_shape_mismatch(rng):
    with pytest.raises(ValueError, match="residual needs x and f"):
        tn.residual(randn(rng, 2, 4), randn(rng, 2, 5))


# --- the loss floor of label smoothing ---------------------------------------------------------------------
@pytest.mark.parametrize("V, eps", [(2, 0.1), (14, 0.05), (50, 0.1), (7, 0.0)])
def test_smoothed_target_entropy_is_the_least_cross_entropy(rng, V, eps):
    """H(q) is reached by logits log q and no logits do better (Gibbs' inequality)."""
    floor = tn.core.nn.smoothed_target_entropy(V, eps)
    y = rng.integers(0, V, 6)
    q = np.full((6, V), eps / V)
    q[np.arange(6), y] += 1 - eps
    best = float(tn.core.nn.cross_entropy_forward(np.log(np.maximum(q, 1e-300)), y, label_smoothing=eps)[0])
    assert abs(best - floor) < 1e-12
    for _ in range(20):
        logits = randn(rng, 6, V) * 3
        assert float(tn.core.nn.cross_entropy_forward(logits, y, label_smoothing=eps)[0]) >= floor - 1e-12


def test_smoothed_target_entropy_rejects_bad_arguments():
    with pytest.raises(ValueError, match="label_smoothing"):
        tn.core.nn.smoothed_target_entropy(10, 1.0)
    with pytest.raises((ValueError, TypeError), match="n_classes"):
        tn.core.nn.smoothed_target_entropy(0, 0.1)
