"""Mixed precision: storing in float16 / bfloat16 / float8 is rounding to the nearest value the format holds —
our table-based rounding equals ml_dtypes' casts bit for bit and torch's native dtypes value for value, so a
library without the dtype (CuPy) stores the same numbers; each operation kept in float32 has a case where the
low precision fails."""

import numpy as np
import pytest
from helpers import randn

from transformer_np.core import weights as W
from transformer_np.efficient import precision as P

pytestmark = pytest.mark.check  # the math check tier: `make check` (see the Makefile)

LOW = [f for f in P.FORMATS if f != "float32"]


def probe_values(name, rng):
    """Random values over every scale the format covers, every representable value, every midpoint between two
    (the ties), and the edges: ±0, ±inf, NaN, just past the largest value and far past it."""
    table = W.code_table(name)
    finite = table[np.isfinite(table)]
    top, _ = P.format_limits(name)
    scales = [1e-6, 1e-3, 1.0, 10.0, min(top / 3, 1e37)]
    mids = ((finite[:-1].astype(np.float64) + finite[1:]) / 2).astype(np.float32)
    edges = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 3.4e38, -3.4e38], np.float32)
    past = np.float32(min(top * 1.03, 3.3e38)) * np.float32([1.0, -1.0])
    return np.concatenate([rng.standard_normal(20000).astype(np.float32) * np.float32(s) for s in scales]
                          + [finite, mids, edges, past])


@pytest.mark.parametrize("name", LOW)
def test_table_rounding_equals_ml_dtypes_cast_bit_for_bit(rng, name):
    x = probe_values(name, rng)
    dt = W.storage_dtype(name)
    with np.errstate(over="ignore"):
        want = x.astype(dt).view(f"u{dt.itemsize}").astype(np.int64)
    got = W.to_codes(x, name)
    assert got.dtype == np.dtype(f"u{dt.itemsize}") and got.shape == x.shape
    same = (got == want) | (np.isnan(W.code_table(name)[got]) & np.isnan(W.code_table(name)[want]))  # NaN payloads
    assert same.all(), x[~same][:5]
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(W.from_codes(got, name), x.astype(dt).astype(np.float32))


@pytest.mark.parametrize("name", LOW)
def test_torch_native_dtypes_and_the_table_path_store_the_same_values(rng, name):
    torch = pytest.importorskip("torch")
    x = torch.from_numpy(probe_values(name, rng))
    native = P.round_trip(x, name)  # torch.bfloat16, torch.float8_e4m3fn, …
    assert P.store(x, name).dtype == getattr(torch, name)
    table = W.from_codes(W.to_codes(x, name), name)
    assert isinstance(table, torch.Tensor)
    assert torch.equal(torch.isnan(native), torch.isnan(table))
    assert torch.equal(native[~torch.isnan(native)], table[~torch.isnan(table)])
    np.testing.assert_array_equal(native.numpy(), P.round_trip(x.numpy(), name))


@pytest.mark.parametrize("name", LOW)
def test_cast_matrix_on_torch_computes_what_the_numpy_one_does(rng, name):
    torch = pytest.importorskip("torch")
    w, x = randn(rng, 16, 8, dtype=np.float32), randn(rng, 3, 16, dtype=np.float32)
    ours, theirs = P.CastMatrix(w, name), P.CastMatrix(torch.from_numpy(w), name)
    np.testing.assert_array_equal(theirs.dequantize().numpy(), ours.dequantize())
    assert theirs.nbytes == ours.nbytes == w.size * (2 if "16" in name else 1)
    out = torch.from_numpy(x) @ theirs
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), x @ ours, rtol=1e-6, atol=1e-6)
    rows = theirs.take_rows(torch.tensor([[3, 0], [7, 7]]))
    np.testing.assert_array_equal(rows.numpy(), ours.dequantize()[[[3, 0], [7, 7]]])


def test_float16_sum_of_squares_overflows_where_float32_does_not():
    x = np.full(576, 11.0, np.float32)  # RMSNorm's statistic over SmolLM2's width
    assert np.isinf(P.sum_of_squares(x, np.float16)) and P.sum_of_squares(x, np.float32) == 576 * 121


def test_e4m3fn_overflow_is_nan_and_e5m2_overflow_is_inf():
    assert np.isnan(P.round_trip(np.float32([500.0]), "float8_e4m3fn")[0])
    assert P.round_trip(np.float32([448.0]), "float8_e4m3fn")[0] == 448.0
    assert np.isinf(P.round_trip(np.float32([70000.0]), "float8_e5m2")[0])


def test_overflow_is_a_property_of_the_cast_mode_and_scaling_removes_it(rng):
    x = np.float32([500.0, -1000.0, 3.0, 0.01])
    assert np.isnan(P.round_trip(x, "float8_e4m3fn")[:2]).all()  # ml_dtypes' cast: NaN past 464
    assert P.round_trip(P.saturate(x, "float8_e4m3fn"), "float8_e4m3fn")[:2].tolist() == [448.0, -448.0]
    back, s = P.scaled_round_trip(x, "float8_e4m3fn")  # per tensor: max|x| lands on 448
    assert s == 1000.0 / 448 and back[1] == -1000.0 and np.isfinite(back).all()
    np.testing.assert_allclose(back[:3], x[:3], rtol=2.0**-4)  # 3 mantissa bits: half a step, relative
    w = randn(rng, 64, 64, dtype=np.float32) * 1e-3  # small weights: unscaled, many fall to e4m3's subnormals
    plain = np.abs(P.round_trip(w, "float8_e4m3fn") - w).max()
    assert np.abs(P.scaled_round_trip(w, "float8_e4m3fn")[0] - w).max() < plain


def test_float16_log_softmax_over_a_large_vocabulary_is_coarse(rng):
    z = randn(rng, 49152, dtype=np.float32) * 4
    exact = P.log_softmax_in(z.astype(np.float64), np.float64)
    err16 = np.abs(P.log_softmax_in(z, np.float16).astype(np.float64) - exact).max()
    err32 = np.abs(P.log_softmax_in(z, np.float32).astype(np.float64) - exact).max()
    assert err16 > 1e-3 > 1e-5 > err32
