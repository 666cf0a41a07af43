"""Tile-by-tile products (core.tiled): x @ Wᵀ from codes equals x @ dequantize(W)ᵀ for every format, for one row,
a few rows and many, row lengths that the tile does not divide, one thread or several; the codes dequantize to
what the formulas say."""

import numpy as np
import pytest

from transformer_np.core import tiled
from transformer_np.core.tiled import RowCodes
from transformer_np.core.weights import code_table

pytestmark = pytest.mark.check


def make_codes(fmt, R, C, g, rng, offsets=False):
    n = C // 2 if fmt in tiled.NIBBLE_VALUES else C
    dt = tiled.CODE_DTYPES[fmt]
    if fmt == "float32":
        q = rng.standard_normal((R, n)).astype(np.float32)
    elif fmt == "float16":
        q = rng.standard_normal((R, n)).astype(np.float16)
    elif fmt == "bfloat16":  # the top halves of random float32 values
        q = (rng.standard_normal((R, n)).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    elif fmt.startswith("float8"):
        finite = np.flatnonzero(np.isfinite(code_table(fmt)))
        q = rng.choice(finite, (R, n)).astype(np.uint8)
    else:
        info = np.iinfo(dt)
        q = rng.integers(info.min, info.max + 1, (R, n), dtype=dt)
    ng = C // g
    scale = rng.uniform(0.5, 2, (R, ng)).astype(np.float32) if fmt != "float32" else None
    offset = rng.standard_normal((R, ng)).astype(np.float32) if offsets else None
    return RowCodes(q, fmt, scale, offset, g)


def reference(w):
    """The same matrix written from the formula, element by element of one group at a time, in float64."""
    R, C = w.shape
    if w.fmt in tiled.NIBBLE_VALUES:  # byte i holds value i (low nibble) and value i + C/2 (high nibble)
        lo, hi = w.codes & 0x0F, w.codes >> 4
        n = np.concatenate([lo, hi], axis=1).astype(np.int64)
        v = tiled.NIBBLE_VALUES[w.fmt](n).astype(np.float64)
    elif w.fmt == "bfloat16":
        v = (w.codes.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    elif w.fmt.startswith("float8"):
        v = code_table(w.fmt)[w.codes].astype(np.float64)
    else:
        v = w.codes.astype(np.float64)
    g = C // w.n_groups
    idx = np.arange(C) // g
    if w.scale is not None:
        v = v * w.scale.astype(np.float64)[:, idx]
    if w.offset is not None:
        v = v + w.offset.astype(np.float64)[:, idx]
    return v


@pytest.mark.parametrize("fmt", tiled.FORMATS)
@pytest.mark.parametrize("offsets", [False, True])
def test_row_codes_dequantize_to_the_formula(fmt, offsets):
    w = make_codes(fmt, 40, 96, 32, np.random.default_rng(0), offsets)
    np.testing.assert_allclose(w.dequantize(), reference(w), rtol=1e-6, atol=1e-6)
    rows = np.array([3, 0, 39, 3])
    np.testing.assert_array_equal(w.dequantize(rows), w.dequantize()[rows])


@pytest.mark.parametrize("fmt", tiled.FORMATS)
@pytest.mark.parametrize("N", [1, 3, 70])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_tiled_product_equals_product_with_the_dequantized_matrix(fmt, N, threads, monkeypatch):
    rng = np.random.default_rng(N + threads)
    monkeypatch.setattr(tiled, "TILE_ELEMENTS", 8 * 160)  # 8-row tiles: R = 203 leaves a ragged last tile
    for g, offsets in ((160, False), (32, True), (16, False)):
        w = make_codes(fmt, 203, 160, g, rng, offsets)
        x = rng.standard_normal((N, 160)).astype(np.float32)
        y = tiled.matmul(x, w, threads=threads)
        assert y.shape == (N, 203) and y.dtype == np.float32
        expect = x.astype(np.float64) @ reference(w).T
        scale = np.abs(x).astype(np.float64) @ np.abs(reference(w)).T  # float32 rounding of each term
        assert np.all(np.abs(y - expect) <= 1e-6 * scale + 1e-30), (fmt, g)


def test_tiled_product_uses_several_tiles_and_threads(monkeypatch):
    """The split really happens: with small tiles every tile is widened, and on two threads both take part."""
    seen = []
    widen = RowCodes.widen

    def spy(self, r0, r1, out, **kw):
        seen.append((r0, r1, tiled.threading.get_ident()))
        return widen(self, r0, r1, out, **kw)

    monkeypatch.setattr(RowCodes, "widen", spy)
    monkeypatch.setattr(tiled, "TILE_ELEMENTS", 8 * 64)
    w = make_codes("int8", 100, 64, 64, np.random.default_rng(1))
    tiled.matmul(np.ones((1, 64), np.float32), w, threads=2)
    assert sorted((a, b) for a, b, _ in seen) == [(r, min(r + 8, 100)) for r in range(0, 100, 8)]
    assert len({t for *_, t in seen}) == 2


def test_one_blas_thread_is_restored_after_the_product():
    before = tiled.blas_threads()
    w = make_codes("int8", 64, 32, 32, np.random.default_rng(2))
    tiled.matmul(np.ones((2, 32), np.float32), w, threads=2)
    assert tiled.blas_threads() == before


def test_pack_halves_puts_value_i_and_i_plus_half_in_one_byte():
    v = np.arange(-8, 8).reshape(2, 8)  # int4 values, two's complement
    packed = tiled.pack_halves(v)
    assert packed.shape == (2, 4) and packed.dtype == np.uint8
    assert [(b & 15, b >> 4) for b in packed[0]] == [(8, 12), (9, 13), (10, 14), (11, 15)]  # -8 is nibble 8, …
    np.testing.assert_array_equal(RowCodes(packed, "int4").dequantize(), v)


@pytest.mark.parametrize("bad, match", [
    (dict(codes=np.zeros((4, 8), np.float32), fmt="int8"), "int8"),
    (dict(codes=np.zeros((4, 8), np.int8), fmt="int9"), "fmt"),
    (dict(codes=np.zeros((4, 8), np.int8), fmt="int8", group=3), "group=3"),
    (dict(codes=np.zeros((4, 8), np.int8), fmt="int8", group=4, scale=np.ones((4, 3), np.float32)), r"\(4, 2\)"),
    (dict(codes=np.zeros((4, 8), np.int8)[:, ::2], fmt="int8"), "C-contiguous"),
])
def test_row_codes_refuse_inconsistent_parts_by_name(bad, match):
    with pytest.raises(ValueError, match=match):
        RowCodes(**bad)


def test_widen_cost_is_measured_for_every_format_and_an_unknown_format_is_named():
    for fmt in tiled.FORMATS:
        ns = tiled.widen_ns_per_value(fmt, shape=(16, 64), repeat=1)
        assert np.isfinite(ns) and ns > 0, fmt
    with pytest.raises(ValueError, match="fmt must be one of"):
        tiled.widen_ns_per_value("int3")


@pytest.mark.parametrize("fmt", sorted(tiled.REBIASED))
def test_rebiasing_the_exponent_widens_every_finite_code_bit_for_bit_as_the_table(fmt):
    n = tiled.REBIASED[fmt][0]
    table = code_table(fmt)
    codes = np.arange(2**n, dtype=f"u{n // 8}")[np.isfinite(table)]  # ±0, subnormals, normals, the largest
    out = np.empty((1, codes.size), np.float32)
    tiled._rebias(codes.reshape(1, -1), fmt, out)
    np.testing.assert_array_equal(out.view(np.uint32), table[codes][None].view(np.uint32))


def test_a_matrix_holding_an_inf_or_a_nan_widens_through_the_table():
    q = np.array([[1.0, -2.5, np.inf, 3.0], [0.0, np.nan, -0.0, 6e-8]], np.float16)  # 6e-8: a subnormal
    finite = RowCodes(np.ascontiguousarray(np.nan_to_num(q, posinf=7.0, nan=5.0)), "float16")
    special = RowCodes(q, "float16")
    assert finite.rebiased and not special.rebiased
    for w in (finite, special):
        out = np.empty(w.shape, np.float32)
        np.testing.assert_array_equal(w.widen(0, 2, out), w.codes.astype(np.float32))
