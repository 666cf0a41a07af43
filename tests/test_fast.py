"""The NumPy float32 fast paths (core.fast) against their plain expressions: erf within 1 ulp of the correctly
rounded value without scipy, GELU, softmax, layer norm, RMSNorm, SiLU, SwiGLU's gate and RoPE equal to their
formulas bit for bit, and pieces over threads equal to one pass."""

import math

import numpy as np
import pytest

from transformer_np.core import backend, fast
from transformer_np.core.nn import gelu


def exact_erf(x):
    """erf correctly rounded to x's dtype: math.erf in double precision (≤ 1 ulp of float64), then rounded."""
    return np.frompyfunc(math.erf, 1, 1)(x.astype(np.float64)).astype(np.float64).astype(x.dtype)


def ulps(a, b):
    return np.abs(a.view(np.int32).astype(np.int64) - b.view(np.int32).astype(np.int64))


def probe(rng):
    """Every scale from the smallest subnormal to past 4, both signs, the branch edges, ±0, ±inf."""
    return np.concatenate([np.linspace(-4.5, 4.5, 200_001, dtype=np.float32),
                           np.geomspace(1e-45, 4.5, 50_000).astype(np.float32),
                           -np.geomspace(1e-45, 4.5, 50_000).astype(np.float32),
                           rng.standard_normal(50_000).astype(np.float32) * 2,
                           np.nextafter(np.float32([1.0, 4.0]), np.float32(0)), np.float32([1.0, 4.0]),
                           np.float32([0.0, -0.0, np.inf, -np.inf, 1e30, -3.4e38])])


def test_float32_erf_is_within_one_ulp_of_the_correctly_rounded_value(rng):
    x = probe(rng)
    got = backend.erf(x)
    assert got.dtype == np.float32 and got.shape == x.shape
    assert ulps(got, exact_erf(x)).max() <= 1
    assert np.signbit(backend.erf(np.float32([-0.0]))[0])  # erf is odd, -0.0 included
    assert np.isnan(backend.erf(np.float32([np.nan]))[0])


def test_float32_erf_needs_no_scipy(monkeypatch, rng):
    import builtins

    real_import = builtins.__import__

    def no_scipy(name, *args, **kwargs):
        if name.startswith("scipy"):
            raise ImportError("scipy hidden by the test")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_scipy)
    x = rng.standard_normal(1000).astype(np.float32)
    assert ulps(backend.erf(x), exact_erf(x)).max() <= 1
    x64 = rng.standard_normal(1000) * 3  # float64 without scipy: math.erf, element by element
    np.testing.assert_allclose(backend.erf(x64), [math.erf(v) for v in x64], rtol=0, atol=1e-15)


def test_float64_erf_stays_within_1e_15(rng):
    x = rng.standard_normal(10_000) * 3
    np.testing.assert_allclose(backend.erf(x), [math.erf(v) for v in x], rtol=0, atol=1e-15)


def test_pieces_over_threads_equal_one_pass(rng):
    x = rng.standard_normal(100_003).astype(np.float32) * 3
    one = np.empty_like(x)
    fast.erf_float32(x, one)
    for chunk in (1, 1000, 4096, 1 << 20):
        np.testing.assert_array_equal(fast.map_chunks(fast.erf_float32, x, chunk=chunk), one)
    y = x.copy()
    assert fast.map_chunks(fast.erf_float32, y, out=y, chunk=4096) is y  # in place
    np.testing.assert_array_equal(y, one)


@pytest.fixture
def kernels_at_every_size(monkeypatch):
    """core.nn routes NumPy float32 inputs of any size to core.fast's kernels (not only from one piece on)."""
    monkeypatch.setattr(fast, "MIN_ELEMENTS", 0)


def test_one_predicate_routes_numpy_float32_from_one_piece_on(rng, monkeypatch):
    from transformer_np.core import nn

    calls = []
    for name in ("gelu", "softmax", "silu", "layer_norm"):
        kernel = getattr(fast, name)
        monkeypatch.setattr(fast, name, lambda *a, kernel=kernel, name=name, **k: calls.append(name) or kernel(*a, **k))
    big = rng.standard_normal((fast.MIN_ELEMENTS // 512, 512)).astype(np.float32)
    small = big[:8]
    g, b = np.ones(512, np.float32), np.zeros(512, np.float32)
    for x in (small, big.astype(np.float64), big):  # only the last takes the kernels
        nn.gelu(x), nn.softmax(x), nn.silu(x), nn.layer_norm(x, g.astype(x.dtype), b.astype(x.dtype))
    assert calls == ["gelu", "softmax", "silu", "layer_norm"]
    nn.softmax(big, axis=0)  # not the last axis: the plain lines
    assert len(calls) == 4


@pytest.mark.usefixtures("kernels_at_every_size")
def test_float32_gelu_is_its_formula_evaluated_in_pieces(rng):
    x = rng.standard_normal((64, 3000)).astype(np.float32) * 3
    plain = backend.erf(x * np.float32(1 / math.sqrt(2.0)))  # the readable expression, in float32
    plain += np.float32(1.0)
    plain *= x
    plain *= np.float32(0.5)
    got = gelu(x)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, plain)
    exact = 0.5 * x.astype(np.float64) * (1 + exact_erf(x.astype(np.float64) / math.sqrt(2.0)).astype(np.float64))
    np.testing.assert_allclose(got, exact, rtol=0, atol=4e-7 * np.abs(x).max())


@pytest.mark.usefixtures("kernels_at_every_size")
@pytest.mark.parametrize("shape", [(0,), (1,), (3, 0, 2), (5, 7)])
def test_fast_paths_keep_empty_and_odd_shapes(rng, shape):
    x = rng.standard_normal(shape).astype(np.float32)
    assert backend.erf(x).shape == shape and gelu(x).shape == shape


def plain_softmax(x, mask=None):
    """core.nn.softmax's expression, written out in NumPy."""
    if mask is not None:
        x = np.where(mask, x, -np.inf)
    m = x.max(axis=-1, keepdims=True)
    m = np.where(m == -np.inf, 0, m)
    e = np.exp(x - m)
    s = e.sum(axis=-1, keepdims=True)
    return e / np.where(s == 0, 1, s)


@pytest.mark.usefixtures("kernels_at_every_size")
@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 64, 64), (1, 12, 300, 257)])
def test_float32_softmax_in_blocks_is_the_plain_expression_bit_for_bit(rng, shape):
    from transformer_np.core.nn import softmax

    x = rng.standard_normal(shape).astype(np.float32) * 5
    np.testing.assert_array_equal(softmax(x), plain_softmax(x))
    mask = rng.random(shape) < 0.7
    if len(shape) > 1:
        mask[..., :1, :] = False  # whole rows masked
    got = softmax(x, mask=mask)
    np.testing.assert_array_equal(got, plain_softmax(x, mask))
    assert not np.isnan(got).any()


@pytest.mark.usefixtures("kernels_at_every_size")
def test_softmax_may_overwrite_its_input_only_when_asked_and_gives_the_same_bits(rng):
    from transformer_np.core.nn import softmax

    x = rng.standard_normal((3, 4, 50, 60)).astype(np.float32)
    kept = x.copy()
    want = softmax(x)
    np.testing.assert_array_equal(x, kept)  # not asked: x untouched
    got = softmax(x, overwrite_x=True)
    assert np.shares_memory(got, x)
    np.testing.assert_array_equal(got, want)
    strided = kept[..., ::2]  # not contiguous: a new array, x left alone
    again = softmax(strided, overwrite_x=True)
    assert not np.shares_memory(again, kept)
    np.testing.assert_array_equal(again, plain_softmax(strided))
    x64 = kept.astype(np.float64)  # the plain path (float64) may ignore it: still the right values
    np.testing.assert_allclose(softmax(x64, overwrite_x=True), plain_softmax(kept.astype(np.float64)), atol=1e-15)


@pytest.mark.usefixtures("kernels_at_every_size")
def test_float32_softmax_rows_of_minus_inf_give_zeros_and_nan_stays_nan():
    from transformer_np.core.nn import softmax

    x = np.float32([[-np.inf, -np.inf, -np.inf], [1.0, np.nan, 0.0], [0.0, 1.0, 2.0]])
    got = softmax(x)
    np.testing.assert_array_equal(got[0], 0.0)
    assert np.isnan(got[1]).all()
    np.testing.assert_array_equal(got[2], plain_softmax(x[2]))
    np.testing.assert_array_equal(softmax(x, axis=0)[:, 2], plain_softmax(x.T)[2])  # another axis: the plain path


@pytest.mark.parametrize("shape", [(2, 3, 200, 700), (40, 12, 33, 33)])  # rows of one matrix, many matrices
@pytest.mark.parametrize("kind", ["causal", "padding", "full"])
def test_float32_masked_softmax_of_large_scores_is_the_plain_expression(rng, kind, shape):
    from transformer_np.core.nn import softmax

    B, _, T, S = shape
    x = rng.standard_normal(shape).astype(np.float32) * 4  # above one piece: the fused mask path
    mask = {"causal": np.tril(np.ones((T, S), bool)),
            "padding": rng.random((B, 1, 1, S)) < 0.8,
            "full": rng.random(x.shape) < 0.5}[kind]
    x[..., 0, 5] = np.nan  # a NaN where the mask hides it (causal row 0 sees key 0 only) must not leak
    got = softmax(x, mask=mask)
    np.testing.assert_array_equal(got, plain_softmax(x, mask))
    scratch = x.copy()
    in_place = softmax(scratch, mask=mask, overwrite_x=True)  # the result written over the scores: same bits
    assert np.shares_memory(in_place, scratch)
    np.testing.assert_array_equal(in_place, got)
    from transformer_np.core.fast import softmax_masked

    transposed = np.ascontiguousarray(x.swapaxes(-1, -2)).swapaxes(-1, -2)  # x's values, rows not contiguous
    read_only = x.copy()
    read_only.flags.writeable = False
    for y in (transposed, read_only):  # asked to overwrite, neither can be: a new array, the same bits
        np.testing.assert_array_equal(softmax_masked(y, mask, overwrite_x=True), got)
    if kind == "causal":
        assert not np.isnan(got[..., 0, :]).any()


@pytest.mark.parametrize("shape", [(7,), (3, 5), (40, 12, 33, 33), (2, 3, 200, 700), (1, 2, 5, 300_000)])
def test_nd_blocks_cover_every_element_once_in_contiguous_blocks_of_whole_rows(shape):
    from transformer_np.core.fast import nd_blocks

    chunk = 1 << 14
    seen = np.zeros(shape, np.int64)
    for index in nd_blocks(shape, chunk):
        block = seen[index]
        assert block.flags.c_contiguous and block.shape[-1] == shape[-1]
        assert block.size <= max(chunk, shape[-1])
        block += 1
    np.testing.assert_array_equal(seen, 1)


def test_import_sets_a_short_openblas_spin_only_when_numpy_is_not_loaded_and_the_user_set_none():
    import os
    import subprocess
    import sys

    code = "import {first}; import os; print(os.environ.get('OPENBLAS_THREAD_TIMEOUT'))"
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}

    def run(first, **extra):
        out = subprocess.run([sys.executable, "-c", code.format(first=first)], env=env | extra,
                             capture_output=True, text=True, check=True)
        return out.stdout.strip()

    assert run("transformer_np") == "12"
    assert run("numpy; import transformer_np") == "None"  # too late: OpenBLAS has read it
    assert run("transformer_np", OPENBLAS_THREAD_TIMEOUT="20") == "20"


# --- norms, SiLU, SwiGLU, RoPE: each kernel against core.nn's expression written out in NumPy -------------------
SHAPES = [(5,), (3, 7), (2, 3, 64), (1, 300, 576)]  # with pieces of 1000 elements: one row, and many per block
LARGE = (2, 700, 768)  # past MIN_ELEMENTS: core.nn takes the kernels


def plain_layer_norm(x, gamma, beta, eps):
    mu = x.mean(axis=-1, keepdims=True)
    xc = x - mu
    rstd = 1.0 / np.sqrt((xc * xc).mean(axis=-1, keepdims=True) + eps)
    x_hat = xc * rstd
    return x_hat * gamma + beta, x_hat, rstd


def plain_rms_norm(x, gamma, eps):
    rstd = 1.0 / np.sqrt((x * x).mean(axis=-1, keepdims=True) + eps)
    x_hat = x * rstd
    return x_hat * gamma, x_hat, rstd


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("centre", [True, False])
def test_float32_norms_in_blocks_of_rows_are_the_plain_expression_bit_for_bit(rng, shape, centre):
    x = (rng.standard_normal(shape) * 3 + 1).astype(np.float32)
    gamma, beta = rng.standard_normal((2, shape[-1])).astype(np.float32)
    want = plain_layer_norm(x, gamma, beta, 1e-5) if centre else plain_rms_norm(x, gamma, 1e-5)
    got = fast.norm_rows(x, gamma, beta if centre else None, 1e-5, centre, chunk=1000)
    assert got[2].shape == (*shape[:-1], 1) and all(g.dtype == np.float32 for g in got)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_large_float32_norms_take_the_kernel_and_keep_the_bits(rng, monkeypatch):
    from transformer_np.core import nn

    x = rng.standard_normal(LARGE).astype(np.float32)
    gamma, beta = rng.standard_normal((2, LARGE[-1])).astype(np.float32)
    calls = []
    norm_rows = fast.norm_rows
    monkeypatch.setattr(fast, "norm_rows", lambda *a, **k: calls.append(a) or norm_rows(*a, **k))
    out, (x_hat, rstd, g) = nn.layer_norm_forward(x, gamma, beta, eps=1e-5)
    for got, w in zip((out, x_hat, rstd), plain_layer_norm(x, gamma, beta, 1e-5)):
        np.testing.assert_array_equal(got, w)
    out, (x_hat, rstd, _) = nn.rms_norm_forward(x, gamma, eps=1e-6)
    for got, w in zip((out, x_hat, rstd), plain_rms_norm(x, gamma, 1e-6)):
        np.testing.assert_array_equal(got, w)
    assert len(calls) == 2 and g is gamma
    nn.layer_norm_forward(x[:, :10], gamma, beta)  # small: the plain lines
    assert len(calls) == 2


def test_norms_of_other_dtypes_and_mixed_inputs_take_the_plain_path(rng):
    from transformer_np.core.nn import layer_norm, rms_norm

    x = rng.standard_normal(LARGE)
    gamma, beta = np.ones(LARGE[-1]), np.zeros(LARGE[-1])
    np.testing.assert_array_equal(layer_norm(x, gamma, beta), plain_layer_norm(x, gamma, beta, 1e-5)[0])
    x32 = x.astype(np.float32)  # float64 γ with float32 x: NumPy's promotion decides, as in the plain expression
    assert rms_norm(x32, gamma).dtype == plain_rms_norm(x32, gamma, 1e-6)[0].dtype == np.float64


@pytest.mark.parametrize("shape", [(0,), (7,), (3, 5), (1, 300, 1536), (2, 700, 1536)])
def test_float32_silu_and_swiglus_gate_are_the_plain_expression_bit_for_bit(rng, shape):
    from transformer_np.core.nn import silu, swiglu_forward

    a = (rng.standard_normal(shape) * 4).astype(np.float32)
    want = a / (1.0 + np.exp(-a))
    np.testing.assert_array_equal(silu(a), want)
    np.testing.assert_array_equal(fast.map_chunks(fast.silu_float32, a, chunk=1000), want)
    u = rng.standard_normal(shape).astype(np.float32)
    np.testing.assert_array_equal(fast.map_chunks(fast.silu_mul_float32, a, chunk=1000, others=(u,)), want * u)
    if len(shape) < 3:
        return
    C, F = 4, shape[-1]
    x = rng.standard_normal((*shape[:-1], C)).astype(np.float32)
    w_gate, w_up, w_down = (rng.standard_normal(s).astype(np.float32) for s in ((C, F), (C, F), (F, C)))
    out, (_, a, u, h) = swiglu_forward(x, w_gate, w_up, w_down)
    np.testing.assert_array_equal(h, (a / (1.0 + np.exp(-a))) * u)
    np.testing.assert_array_equal(out, h @ w_down)


def plain_rope_pairs(x, cos, sin):
    a, b = x[..., 0::2], x[..., 1::2]
    return np.stack([a * cos - b * sin, a * sin + b * cos], axis=-1).reshape(x.shape)


@pytest.mark.parametrize("inverse", [False, True])
def test_float32_rope_written_in_place_is_the_plain_expression_bit_for_bit(rng, inverse):
    from transformer_np.core.embeddings import rope, rope_angles

    x = rng.standard_normal((2, 3, 50, 64)).astype(np.float32)
    pos = np.stack([np.arange(50), np.arange(7, 57)])  # (B, T): each row its own positions
    cos, sin = rope_angles(pos, 64, 500.0)
    cos, sin = cos[:, None].astype(np.float32), sin[:, None].astype(np.float32)
    got = rope(x, pos, 500.0, inverse=inverse)
    np.testing.assert_array_equal(got, plain_rope_pairs(x, cos, -sin if inverse else sin))
    assert got.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_array_equal(rope(x, pos, 500.0, inverse=inverse, angles=rope_angles(pos, 64, 500.0)), got)


@pytest.mark.usefixtures("kernels_at_every_size")
def test_float32_softmax_with_a_mask_that_widens_x_is_the_plain_expression(rng):
    from transformer_np.core.nn import softmax

    x = rng.standard_normal((5, 9)).astype(np.float32)
    mask = rng.random((3, 5, 9)) < 0.6  # broadcasting makes the result (3, 5, 9)
    got = softmax(x, mask=mask)
    assert got.shape == (3, 5, 9)
    np.testing.assert_array_equal(got, plain_softmax(x, mask))


@pytest.mark.parametrize("shape", [(576, 1536), (1536, 576), (576, 192), (256, 300)])
@pytest.mark.parametrize("order", ["C", "F"])
def test_a_few_rows_times_a_weight_block_by_block_is_the_product_within_float32_rounding(rng, shape, order):
    w = np.asarray(rng.standard_normal(shape), dtype=np.float32, order=order)
    for N in range(2, fast.FEW_ROWS + 1):
        x = rng.standard_normal((N, shape[0])).astype(np.float32)
        assert fast.few_rows(x, w)
        got, want = fast.few_rows_matmul(x, w), (x.astype(np.float64) @ w.astype(np.float64))
        assert got.shape == (N, shape[1]) and got.dtype == np.float32
        # float32 sums of C products in another order: |error| ≤ C·eps·Σ|x_i w_i| (a loose bound, never reached)
        bound = shape[0] * np.finfo(np.float32).eps * (np.abs(x) @ np.abs(w.astype(np.float64)))
        assert np.all(np.abs(got - want) <= bound)
        np.testing.assert_allclose(got, x @ w, rtol=1e-4, atol=1e-4)


def test_linear_takes_the_block_path_only_for_2_to_8_float32_rows(rng, monkeypatch):
    from transformer_np.core.nn import linear

    calls = []
    real = fast.few_rows_matmul
    monkeypatch.setattr(fast, "few_rows_matmul", lambda x, w: calls.append(x.shape) or real(x, w))
    w = rng.standard_normal((576, 192)).astype(np.float32)
    for rows in (1, 2, 8, 9):
        linear(rng.standard_normal((1, rows, 576)).astype(np.float32), w)
    linear(rng.standard_normal((3, 576)), w.astype(np.float64))  # float64: the plain product
    linear(rng.standard_normal((3, 16)).astype(np.float32), w[:16, :16].copy())  # a small matrix: plain
    assert calls == [(2, 576), (8, 576)]
