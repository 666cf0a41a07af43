r"""Stored weights: a (C_in, C_out) matrix kept in another form than a plain float array, which does its own
``x @ W``.

Every model in the package multiplies by its weights with ``x @ w`` (:func:`~transformer_np.core.nn.linear`) and
looks rows up with :func:`~transformer_np.core.embeddings.token_embedding`.  A :class:`StoredWeight` stands in for
the array at those two places, so the same forward runs on weights that are

* quantized (``efficient.quantize``: integers and scales, y = x · deq(W)),
* stored in a narrow float format (``efficient.precision``: bfloat16, float16, float8, widened per product),
* read as a GGUF file's blocks (``pretrained.gguf``: a view of the memory map),
* recording the activations that flow into them (``efficient.quality``), or
* one rank's share of a tensor-parallel product, the collective inside ``x @ W`` (``efficient.tensor_parallel_mpi``).

The contract, written once here and checked for every subclass by tests/test_protocols.py:

    W.shape, W.ndim == 2, W.dtype (what x @ W computes in), W.size, W.nbytes (bytes held)
    W.T                          the transpose, still stored (a flag, nothing copied)
    x @ W                        == x @ W.dequantize() within the storage's rounding (NumPy defers: __rmatmul__)
    W.take_rows(ids)             == W.dequantize()[ids], rows only (an embedding lookup)
    W.dequantize()               the float matrix

A subclass writes :meth:`dequantize_stored` (and ``nbytes``).  One whose stored form is codes and scales sets
``row_codes`` (a :class:`~transformer_np.core.tiled.RowCodes`, ``codes_are_columns`` saying which of its axes the
codes' rows run along); then ``x @ W`` on NumPy float32 dequantizes tile by tile (core.tiled) and no float copy
of the whole matrix is ever made.  A subclass whose product is not x · deq(W) overrides :meth:`matmul`.  Below
them: the tables of every bit pattern of the narrow float formats (:func:`code_table`), how a library without
such a dtype stores and reads them (:func:`to_codes`, :func:`from_codes`).
"""

from __future__ import annotations

import math

import numpy as np

from . import tiled
from .backend import array_namespace, device, is_numpy_namespace
from .tiled import code_table, storage_dtype  # noqa: F401 - the narrow float formats' tables, offered here

FORMATS = tiled.FLOAT_FORMATS


class StoredWeight:
    r"""A (C_in, C_out) weight kept in some stored form; ``x @ W`` runs through :meth:`matmul`.

    Only what the models ask of a weight is offered: ``shape``, ``ndim``, ``dtype``, ``size``, ``.T``, ``x @ W``,
    row lookup (:meth:`take_rows`, for an embedding table) and ``nbytes``; NumPy is told to leave ``x @ W`` to it
    (``__array_ufunc__ = None``).  ``dequantize()`` gives the float matrix.  ``compute_dtype``: the dtype the
    products come out in (set by the subclass)."""

    __array_ufunc__ = None  # ndarray @ StoredWeight -> StoredWeight.__rmatmul__
    ndim = 2
    compute_dtype = np.dtype(np.float32)
    row_codes = None  # tiled.RowCodes of the stored matrix, for the tile product; None: dequantized whole
    codes_are_columns = False  # True: the codes' rows are the stored matrix's columns, (C_out, C_in) of (C_in, C_out)

    def __init__(self, shape, transposed=False):
        self._shape, self.transposed = tuple(int(n) for n in shape), transposed

    @property
    def shape(self):
        return self._shape[::-1] if self.transposed else self._shape

    @property
    def size(self):
        return math.prod(self._shape)

    @property
    def dtype(self):
        """The dtype x @ W computes in."""
        return self.compute_dtype

    @property
    def nbytes(self):
        """Bytes the stored form holds."""
        raise NotImplementedError

    @property
    def T(self):  # noqa: N802 - the array attribute's name
        twin = object.__new__(type(self))
        twin.__dict__.update(self.__dict__)
        twin.transposed = not self.transposed
        return twin

    def dequantize(self):
        """The float matrix, (C_in, C_out) — or its transpose, for a transposed weight."""
        w = self.dequantize_stored()
        return w.T if self.transposed else w

    def dequantize_stored(self, rows=None):
        """The stored matrix (before any .T) as floats, or only its ``rows`` (an int array)."""
        raise NotImplementedError

    def take_rows(self, ids):
        """W[ids] for an embedding table, dequantizing only the rows asked for (``ids`` any int shape)."""
        if self.transposed:
            raise ValueError("row lookup of a transposed stored weight")
        xp = array_namespace(ids)
        flat = xp.reshape(ids, (-1,))
        return xp.reshape(self.dequantize_stored(rows=flat), (*ids.shape, self._shape[1]))

    def output_codes(self):
        """``row_codes`` when their rows are the outputs of ``x @ W`` as W stands (transposed or not), else None."""
        if self.row_codes is None or self.codes_are_columns == self.transposed:
            return None
        return self.row_codes

    def matmul(self, x):
        """x (..., C_in) @ W: tile by tile from the codes (NumPy float32, core.tiled), else with the weight
        dequantized for this product only."""
        codes = self.output_codes()
        if codes is not None and tiled.applies(x):
            return tiled.linear(x, codes)
        return x @ self.dequantize()

    def __rmatmul__(self, x):
        return self.matmul(x)

    def __array__(self, dtype=None, copy=None):
        w = np.asarray(self.dequantize())
        return w if dtype is None else w.astype(dtype)


def float32_of(x):
    """float32 in x's library (np.dtype for NumPy): the dtype a stored weight computes in."""
    xp = array_namespace(x)
    return np.dtype(np.float32) if is_numpy_namespace(xp) else xp.float32


# --- narrow float formats as tables of bit patterns ----------------------------------------------------------
def to_codes(x, name):
    r"""x rounded to the nearest value of format ``name`` — ties to the even code, past the largest finite value
    to the format's overflow (inf, or NaN for float8_e4m3fn, as ml_dtypes does) — as bit patterns (uint8 or
    uint16), with standard array operations only (searchsorted over the format's values): how a library without
    the dtype stores it.  Equals ml_dtypes' cast bit for bit (tested on every format)."""
    xp = array_namespace(x)
    table = code_table(name)
    half = table.size // 2  # codes with the sign bit clear
    n = int(np.isfinite(table[:half]).sum())  # finite non-negative codes 0 … n-1; code n is inf or NaN
    top = 2.0 * float(table[n - 1]) - float(table[n - 2])  # one step past the largest finite value
    grid = np.append(table[:n].astype(np.float64), top)
    grid_x = xp.asarray(grid, device=device(x))
    a = xp.abs(xp.astype(xp.reshape(x, (-1,)), xp.float64))  # flat: take() wants 1-D indices
    a_in = xp.clip(a, max=top)  # (inf and NaN are placed below)
    hi = xp.clip(xp.searchsorted(grid_x, a_in), 1, n)  # grid[hi - 1] < a <= grid[hi]
    lo = hi - 1
    d_lo, d_hi = a_in - xp.take(grid_x, lo), xp.take(grid_x, hi) - a_in
    code = xp.where((d_lo < d_hi) | ((d_lo == d_hi) & (lo % 2 == 0)), lo, hi)
    code = xp.where(a > top, n, code)  # far past the largest value: overflow
    nan_code = int(np.flatnonzero(np.isnan(table[:half]))[0])
    code = xp.where(xp.isnan(a), nan_code, code)
    code = xp.astype(code, xp.int32) + xp.astype(xp.signbit(xp.reshape(x, (-1,))), xp.int32) * half
    return xp.reshape(xp.astype(code, xp.uint8 if half == 128 else xp.uint16), x.shape)  # one byte or two


def from_codes(codes, name):
    """The float32 values of bit patterns of format ``name``: a lookup in the format's table of values."""
    xp = array_namespace(codes)
    table = xp.asarray(code_table(name), device=device(codes))
    return xp.reshape(xp.take(table, xp.reshape(xp.astype(codes, xp.int64), (-1,))), codes.shape)
