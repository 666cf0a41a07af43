r"""Mixed precision: store in 16 or 8 bits, compute where it is safe, keep float32 where it is not.

    format          bits  exponent  mantissa  largest finite   step near 1
    float32          32      8         23     3.4e38           1.2e-7
    float16          16      5         10     65504            9.8e-4
    bfloat16         16      8          7     3.4e38           7.8e-3
    float8_e4m3fn     8      4          3     448              0.125    (no inf: overflow gives NaN)
    float8_e5m2       8      5          2     57344            0.25

(bfloat16 and the float8 formats are NumPy dtypes through ``ml_dtypes``.)  The rule this package follows: weights
may be stored in any of them and are widened to float32 for their products (float32 accumulation); the
operations that stay float32 are the ones a low precision breaks, each shown by a function below —
norm statistics (a sum of squares overflows float16), softmax and the logits' log-softmax (float16 cannot hold
the sum of 49,152 probabilities precisely), and casts of values past a format's range (float8_e4m3fn's NaN).
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

from ..core.checks import check_choice
from ..core.nn import log_softmax
from .quantize import QuantizedMatrix, quantize_params

FORMATS = ("float32", "float16", "bfloat16", "float8_e4m3fn", "float8_e5m2")


def storage_dtype(name):
    """The NumPy dtype of a storage format name (bfloat16 and float8 from ml_dtypes)."""
    check_choice("format", name, FORMATS)
    return np.dtype(getattr(ml_dtypes, name) if hasattr(ml_dtypes, name) else name)


def round_trip(x, name):
    """x stored in ``name`` and read back as float32: what storage in that format keeps of x."""
    return np.asarray(x).astype(storage_dtype(name)).astype(np.float32)


def format_limits(name):
    """(largest finite value, spacing of the numbers just above 1) of a format."""
    info = ml_dtypes.finfo(storage_dtype(name))
    return float(info.max), float(info.eps)


class CastMatrix(QuantizedMatrix):
    """A weight stored in a low-precision float format, widened to float32 for each product."""

    def __init__(self, w, name="bfloat16"):
        super().__init__(w.shape)
        self.format = name
        self.w = np.asarray(w).astype(storage_dtype(name))
        self.scale_dtype = np.dtype(np.float32)

    @property
    def nbytes(self):
        return self.w.nbytes

    def dequantize_stored(self, rows=None):
        w = self.w if rows is None else np.take(self.w, rows, axis=0)
        return w.astype(np.float32)


def cast_params(params, name, skip=()):
    """Every 2-D weight of the tree stored in format ``name`` (vectors — norms, biases — stay float32)."""
    return quantize_params(params, lambda w: CastMatrix(w, name), skip)


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
