r"""Mixed precision: store in 16 or 8 bits, compute where it is safe, keep float32 where it is not.

    format          bits  exponent  mantissa  largest finite   step near 1
    float32          32      8         23     3.4e38           1.2e-7
    float16          16      5         10     65504            9.8e-4
    bfloat16         16      8          7     3.4e38           7.8e-3
    float8_e4m3fn     8      4          3     448              0.125    (no inf: overflow gives NaN)
    float8_e5m2       8      5          2     57344            0.25

(bfloat16 and the float8 formats are NumPy dtypes through ``ml_dtypes``, and torch's own dtypes on torch tensors
— where torch's float8_e4m3fn cast saturates at ±448, the package keeps ml_dtypes' NaN; a library without the
dtype — CuPy has only float16 — stores the format's bit patterns as unsigned integers, rounded to and read from
the format's table of values with standard array operations: :func:`to_codes`, :func:`from_codes`.)

The rule this package follows: weights may be stored in any of them and are widened to float32 for their products
(float32 accumulation); the operations that stay float32 are the ones a low precision breaks, each shown by a
function below — norm statistics (a sum of squares overflows float16), softmax and the logits' log-softmax
(float16 cannot hold the sum of 49,152 probabilities precisely), and casts of values past a format's range
(float8_e4m3fn's NaN).
"""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np

from ..core import tiled
from ..core.backend import array_namespace, is_numpy_namespace, is_torch_namespace
from ..core.checks import check_choice
from ..core.nn import log_softmax
from ..core.tree import map_weights
from ..core.weights import FORMATS, StoredWeight, float32_of, from_codes, storage_dtype, to_codes

# float8_e4m3fn has no inf: a value rounds to NaN once it is past halfway from 448 to the next step (512)
OVERFLOW_TO_NAN = 464.0


def native_dtype(name, xp):
    """The dtype of format ``name`` in array library ``xp``, or None where the library has none (CuPy has float16
    but no bfloat16 or float8): NumPy through ml_dtypes, torch's torch.bfloat16 / torch.float8_e4m3fn / …"""
    check_choice("format", name, FORMATS)
    if is_numpy_namespace(xp):
        return storage_dtype(name)
    if is_torch_namespace(xp):
        import torch

        return getattr(torch, name, None)
    return getattr(xp, name, None) if name in ("float32", "float16") else None


def store(x, name):
    """x stored in format ``name`` in its own library: the library's dtype where it has one, else
    :func:`to_codes`' bit patterns."""
    xp = array_namespace(x)
    dt = native_dtype(name, xp)
    if dt is None:
        return to_codes(x, name)
    if is_numpy_namespace(xp):
        with np.errstate(over="ignore"):  # past the largest value: the format's inf (or NaN), as in hardware
            return x.astype(dt)
    if name == "float8_e4m3fn":  # torch saturates to ±448 (even inf); the package's rule is ml_dtypes' NaN
        x = xp.where(xp.abs(x) > OVERFLOW_TO_NAN, xp.nan, x)
    return xp.astype(x, dt)


def widen(stored, name):
    """float32 values of an array made by :func:`store`."""
    xp = array_namespace(stored)
    if native_dtype(name, xp) is None:
        return from_codes(stored, name)
    return stored.astype(np.float32) if is_numpy_namespace(xp) else xp.astype(stored, xp.float32)


def round_trip(x, name):
    """x stored in ``name`` and read back as float32: what storage in that format keeps of x (x: any library)."""
    return widen(store(x, name), name)


def saturate(x, name):
    """x clipped to the format's largest finite value ±max: what a *saturating* cast stores (torch's float8_e4m3fn
    cast and the FP8 matrix-product libraries saturate; ml_dtypes' cast, :func:`store`, gives NaN past 464)."""
    largest, _ = format_limits(name)
    xp = array_namespace(x)
    return xp.clip(x, -largest, largest)


def scaled_round_trip(x, name):
    r"""Per-tensor scaling, as FP8 recipes store a tensor (Micikevicius et al. 2022): s = max|x| / max_format,
    x ≈ s · widen(store(x / s)).  The largest value lands on the format's largest, so nothing overflows and the
    format's relative precision is spent where the values are.  Returns (the values read back, s)."""
    largest, _ = format_limits(name)
    xp = array_namespace(x)
    amax = float(xp.max(xp.abs(x)))
    s = amax / largest if amax > 0 else 1.0
    return round_trip(saturate(x / s, name), name) * s, s


def format_limits(name):
    """(largest finite value, spacing of the numbers just above 1) of a format."""
    info = ml_dtypes.finfo(storage_dtype(name))
    return float(info.max), float(info.eps)


class CastMatrix(StoredWeight):
    """A weight stored in a low-precision float format, widened to float32 for each product (any library:
    :func:`store` / :func:`widen`) — for NumPy a tile at a time (core.tiled) along whichever axis is contiguous."""

    def __init__(self, w, name="bfloat16"):
        self._hold(store(w, name), name)  # NumPy keeps w's memory layout: rows or columns contiguous

    @classmethod
    def from_stored(cls, stored, name):
        """A weight already stored in format ``name`` (:func:`store`'s array, e.g. filled a few rows at a time)."""
        m = object.__new__(cls)
        m._hold(stored, name)
        return m

    def _hold(self, stored, name):
        StoredWeight.__init__(self, stored.shape)
        self.format, self.w = name, stored
        self.compute_dtype = float32_of(self.w)
        if is_numpy_namespace(array_namespace(stored)):  # the tile product reads whichever axis is contiguous
            self.codes_are_columns = not self.w.flags.c_contiguous
            codes = self.w.T if self.codes_are_columns else self.w
            if codes.flags.c_contiguous:
                self.row_codes = tiled.RowCodes(codes.view(tiled.CODE_DTYPES[name]), name)

    @property
    def nbytes(self):
        return math.prod(self.w.shape) * storage_dtype(self.format).itemsize

    def dequantize_stored(self, rows=None):
        xp = array_namespace(self.w)
        w = self.w if rows is None else xp.take(self.w, rows, axis=0)
        return widen(w, self.format)


def cast_params(params, name, skip=()):
    """Every 2-D weight of the tree stored in format ``name`` (vectors — norms, biases — stay float32); a linear's
    W (C_in, C_out) laid out by columns, each output's C_in values contiguous, as the tile product reads them."""
    return map_weights(params, lambda p, w: CastMatrix(w if p.split("/")[0] == "embed" else _by_columns(w), name),
                       skip)


def _by_columns(w):
    """w with its columns contiguous (Fortran order; another library's array as it is)."""
    return np.asfortranarray(w) if is_numpy_namespace(array_namespace(w)) else w


# --- why some operations stay float32: a failing case for each ------------------------------------------------


def sum_of_squares(x, dtype):
    r"""\sum_c x_c^2 over the last axis computed in ``dtype`` — the statistic inside layer norm and RMSNorm.
    In float16 it overflows to inf once it passes 65504 (576 activations of size 11 are enough)."""
    x = np.asarray(x).astype(dtype)
    with np.errstate(over="ignore"):  # the overflow is the point: it gives inf, silently
        return (x * x).sum(axis=-1)


def log_softmax_in(logits, dtype):
    r"""log softmax(z) (core.nn.log_softmax, max subtracted) computed entirely in ``dtype``: in float16 the
    exponentials and their sum over a large vocabulary are rounded to 11 bits, so the log-probabilities the loss
    and sampling read are off by up to ~1e-2 where float32's are off by ~1e-6."""
    return log_softmax(np.asarray(logits).astype(dtype))
