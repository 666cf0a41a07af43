r"""Quantization: store numbers as small integers and a scale, x ≈ s · q.

Each scheme is a pair ``quantize_* / dequantize``; the numbers that share one scale form a *group*:

    symmetric (absmax)   s = max|x| / q_max,  q = clip(round(x / s), -q_max, q_max),  q_max = 2^{b-1} - 1
    asymmetric           s = (hi - lo) / (2^b - 1),  z = round(-lo / s),  lo = min(min x, 0), hi = max(max x, 0),
                         q = clip(round(x / s) + z, 0, 2^b - 1),  x ≈ s · (q - z)

and the group is the whole tensor (``axis=None``), every slice along ``axis`` (``axis=0`` of a (C_in, C_out)
weight: one scale per output channel; ``axis=-1`` of (T, C) activations: one per token), or runs of
``group_size`` numbers along ``axis`` (g = 32, 64, 128).  Rounding is to the nearest integer, so inside the
grid's range |x - s·q| ≤ s/2.

Then what a model computes with them — weights that do their own ``x @ W`` (stored weights,
:class:`~transformer_np.core.weights.StoredWeight`): weight-only (dequantized at use), W8A8 (int8 activations × int8
weights accumulated in int32) and LLM.int8() (outlier columns in float); and SmoothQuant's smoothing folded into the
preceding norm.  (The int8 KV caches that use these formulas live beside the other caches, in ``kv_int8``.)
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from ..core import tiled
from ..core.backend import array_namespace, is_numpy_namespace
from ..core.checks import check_positive_int, check_real
from ..core.tree import flatten, replace_weights
from ..core.weights import StoredWeight

# --- groups: move the group axis last and cut it into runs ------------------------------------------------


def _grouped(x, axis, group_size):
    """x viewed as (..., n_groups, g): the numbers that share a scale on the last axis."""
    xp = array_namespace(x)
    if axis is None:
        return xp.reshape(x, (1, -1))
    x = xp.moveaxis(x, axis, -1)
    n = x.shape[-1]
    g = n if group_size is None else check_positive_int("group_size", group_size)
    if n % g:
        raise ValueError(f"group_size={g} must divide the length {n} of axis {axis}")
    return xp.reshape(x, (*x.shape[:-1], n // g, g))


def _ungrouped(x, shape, axis):
    """The inverse of _grouped for a tensor of the original ``shape``."""
    xp = array_namespace(x)
    if axis is None:
        return xp.reshape(x, shape)
    moved = list(shape)
    moved.append(moved.pop(axis))
    return xp.moveaxis(xp.reshape(x, tuple(moved)), -1, axis)


@dataclasses.dataclass(frozen=True)
class Quantized:
    """Integers q (in the grouped layout (..., n_groups, g), int4 packed two a byte), their scales (and zero
    points), and what it takes to rebuild the float tensor."""

    q: object
    scale: object  # (..., n_groups, 1) float32
    zero: object  # (..., n_groups, 1) int, or None (symmetric)
    bits: int
    axis: int | None
    group_size: int | None
    shape: tuple
    packed: bool = False

    @property
    def nbytes(self):
        """Bytes held: the integers, the scales and the zero points."""
        return sum(math.prod(a.shape) * a.dtype.itemsize for a in (self.q, self.scale, self.zero) if a is not None)

    @property
    def bits_per_weight(self):
        return 8 * self.nbytes / math.prod(self.shape)

    def integers(self):
        """q unpacked, in the grouped layout, as int8 (symmetric) or uint8 (asymmetric)."""
        if not self.packed:
            return self.q
        xp = array_namespace(self.q)
        flat = unpack_int4(self.q, math.prod(self.shape), signed=self.zero is None)
        return xp.reshape(flat, (*self.scale.shape[:-1], -1))


def _nan_to_zero(q):
    """The integers of a group whose scale is NaN (the group held a NaN) set to 0 before the cast (NaN has no integer);
    the NaN scale makes every dequantized value of the group NaN: a NaN is carried on, never rounded away."""
    xp = array_namespace(q)
    return xp.where(xp.isnan(q), xp.zeros_like(q), q)


def quantize_symmetric(x, bits=8, axis=None, group_size=None, pack=False):
    r"""s = \max_{group}|x| / q_{max},  q = clip(round(x / s), -q_{max}, q_{max}),  q_{max} = 2^{b-1} - 1.

    x: float array; bits in 2…8; axis/group_size: see the module docstring; pack: two 4-bit values a byte
    (bits ≤ 4).  A group of zeros gets s = 1 (any s reproduces it); a group holding a NaN gets s = NaN, so it
    dequantizes to NaN (the NaN is not hidden).  Returns :class:`Quantized`."""
    check_bits(bits, pack)
    xp = array_namespace(x)
    g = _grouped(x, axis, group_size)
    q_max = 2 ** (bits - 1) - 1
    s = xp.max(xp.abs(g), axis=-1, keepdims=True) / q_max  # (..., n_groups, 1)
    s = xp.where(s == 0, xp.ones_like(s), s)  # a group of zeros; a NaN in the group keeps s = NaN
    q = xp.astype(_nan_to_zero(xp.clip(xp.round(g / s), -q_max, q_max)), xp.int8)
    if pack:
        q = pack_int4(q)
    return Quantized(q, xp.astype(s, xp.float32), None, bits, axis, group_size, tuple(x.shape), pack)


def quantize_asymmetric(x, bits=8, axis=None, group_size=None, pack=False):
    r"""s = (hi - lo) / (2^b - 1),  z = round(-lo / s),  q = clip(round(x / s) + z, 0, 2^b - 1), with the range
    lo = \min(\min x, 0), hi = \max(\max x, 0) widened to hold 0.

    The zero point z is an integer, so x = 0 is represented exactly (padding, ReLU zeros).  Returns
    :class:`Quantized` with uint8 q and z."""
    check_bits(bits, pack)
    xp = array_namespace(x)
    g = _grouped(x, axis, group_size)
    lo, hi = xp.min(g, axis=-1, keepdims=True), xp.max(g, axis=-1, keepdims=True)
    lo, hi = xp.minimum(lo, xp.zeros_like(lo)), xp.maximum(hi, xp.zeros_like(hi))  # the grid must hold 0
    top = 2**bits - 1
    s = (hi - lo) / top
    s = xp.where(s == 0, xp.ones_like(s), s)  # a group of zeros; a NaN in the group keeps s = NaN
    z = _nan_to_zero(xp.clip(xp.round(-lo / s), 0, top))
    q = xp.astype(_nan_to_zero(xp.clip(xp.round(g / s) + z, 0, top)), xp.uint8)
    if pack:
        q = pack_int4(q)
    return Quantized(q, xp.astype(s, xp.float32), xp.astype(z, xp.uint8), bits, axis, group_size, tuple(x.shape),
                     pack)


def dequantize(qt, dtype=None):
    r"""x ≈ s · q (symmetric) or s · (q - z) (asymmetric), in the original shape (float32 by default)."""
    q = qt.integers()
    xp = array_namespace(q)
    dtype = dtype or xp.float32
    s = xp.astype(qt.scale, dtype)
    g = xp.astype(q, dtype) if qt.zero is None else xp.astype(q, dtype) - xp.astype(qt.zero, dtype)
    return _ungrouped(g * s, qt.shape, qt.axis)


def check_bits(bits, pack=False):
    check_positive_int("bits", bits)
    if not 2 <= bits <= 8:
        raise ValueError(f"bits must lie in 2…8, got {bits}")
    if pack and bits > 4:
        raise ValueError(f"pack=True stores two values a byte: bits must be ≤ 4, got {bits}")


def pack_int4(q):
    r"""Two 4-bit values a byte: value 2i in the low nibble, 2i+1 in the high one (flattened, even length).
    q: int8 in [-8, 7] or uint8 in [0, 15] -> uint8 (q.size / 2,)."""
    xp = array_namespace(q)
    flat = xp.reshape(q, (-1,))
    if flat.shape[0] % 2:
        raise ValueError(f"int4 packing needs an even number of values, got {flat.shape[0]}")
    u = xp.astype(flat, xp.uint8) & 0x0F  # two's complement keeps the low 4 bits of a negative int8
    return u[0::2] | (u[1::2] << 4)


def unpack_int4(packed, n, signed=True):
    """The inverse of pack_int4: n values, int8 in [-8, 7] (signed) or uint8 in [0, 15]."""
    xp = array_namespace(packed)
    lo, hi = packed & 0x0F, packed >> 4
    u = xp.reshape(xp.stack([lo, hi], axis=-1), (-1,))[:n]
    if not signed:
        return u
    s = xp.astype(u, xp.int8)
    return xp.where(s > 7, s - 16, s)  # 8…15 are the negative values -8…-1


# --- weights that do their own x @ W (core.weights.StoredWeight) ------------------------------------------


class WeightOnlyMatrix(StoredWeight):
    r"""Weight-only quantization: W stored as :class:`Quantized`, y = x · deq(W) in float32 — for NumPy, a tile
    of rows widened at a time (core.tiled, :func:`tile_codes`); never a float copy of the whole matrix where the
    groups run along its rows or columns."""

    def __init__(self, w, bits=8, axis=0, group_size=None, asymmetric=False, pack=None):
        super().__init__(w.shape)
        pack = bits <= 4 if pack is None else pack
        quantize = quantize_asymmetric if asymmetric else quantize_symmetric
        self.qt = quantize(w, bits, axis, group_size, pack=pack)
        self.compute_dtype = self.qt.scale.dtype
        self._set_codes()

    @classmethod
    def from_quantized(cls, qt):
        """A weight kept as numbers another method rounded (GPTQ's): a :class:`Quantized` of a (C_in, C_out)
        matrix."""
        m = object.__new__(cls)
        StoredWeight.__init__(m, qt.shape)
        m.qt, m.compute_dtype = qt, qt.scale.dtype
        m._set_codes()
        return m

    def _set_codes(self):
        self.row_codes = tile_codes(self.qt)
        self.codes_are_columns = self.qt.axis in (0, -2)

    @property
    def nbytes(self):
        """The integers, scales and zero points; and the tile product's offsets −s·z (asymmetric)."""
        offset = self.row_codes.offset if self.row_codes is not None else None
        return self.qt.nbytes + (0 if offset is None else offset.nbytes)

    def dequantize_stored(self, rows=None):
        qt = self.qt
        if rows is None:
            return dequantize(qt)
        if qt.axis not in (1, -1):  # groups run across rows: the whole matrix is needed
            return dequantize(qt)[rows]
        xp = array_namespace(qt.scale)
        R = self._shape[0]  # groups along each row: the rows asked for are dequantized alone
        q = xp.take(xp.reshape(qt.q, (R, -1)), rows, axis=0)
        part = dataclasses.replace(qt, q=xp.reshape(q, (-1,)) if qt.packed else xp.reshape(q, (-1, *qt.q.shape[1:])),
                                   scale=xp.take(qt.scale, rows, axis=0), shape=(rows.shape[0], self._shape[1]),
                                   zero=None if qt.zero is None else xp.take(qt.zero, rows, axis=0))
        return dequantize(part)


def tile_codes(qt):
    r"""A quantized (C_in, C_out) matrix as the tile product's codes (core.tiled.RowCodes), nothing copied but the
    offsets: one row per run of groups, s·q (symmetric) or s·q − s·z (asymmetric: the zero point as an offset
    per group); 4-bit values re-packed as the tiles read them (tiled.pack_halves: a copy of the packed bytes).  None
    where the groups do not run along rows or columns (one scale for the tensor) or the arrays are not NumPy's."""
    if qt.axis not in (0, 1, -1, -2) or len(qt.shape) != 2 or not is_numpy_namespace(array_namespace(qt.q)):
        return None
    rows = qt.shape[1] if qt.axis in (0, -2) else qt.shape[0]  # the grouped layout is (rows, n_groups, g)
    scale = qt.scale.reshape(rows, -1)
    if qt.packed:
        fmt = "int4" if qt.zero is None else "uint4"
    else:
        fmt = "int8" if qt.zero is None else "uint8"
    offset = None if qt.zero is None else -scale * qt.zero.reshape(rows, -1).astype(np.float32)
    q = qt.integers().reshape(rows, -1)
    q = tiled.pack_halves(q) if qt.packed else np.ascontiguousarray(q)
    return tiled.RowCodes(q, fmt, scale, offset, None if qt.group_size is None else qt.group_size)


def w8a8_matmul(x, w_q, w_scale):
    r"""y = (s_x ⊗ s_w) ⊙ (q_x q_w): per-token int8 activations × per-output-channel int8 weights, the product
    accumulated exactly as an int32 accumulator would, then rescaled — an integer GPU kernel's arithmetic.

    x: float (N, C_in); w_q: int8 (C_in, C_out); w_scale: (1, C_out).  s_x = max_c |x_{n,c}| / 127 per token.
    The integer sums are computed by a float64 matrix product (BLAS; NumPy's integer matmul has none): every
    partial sum is an integer below C_in · 127² < 2³¹ < 2⁵³, which float64 holds exactly, so the result is the
    int32 accumulator's, bit for bit (tests/test_quantize.py checks it against an int64 product)."""
    xp = array_namespace(x)
    if x.shape[-1] * 127 * 127 >= 2**31:
        raise ValueError(f"C_in = {x.shape[-1]} could overflow the int32 accumulator (C_in · 127² ≥ 2³¹)")
    xq = quantize_symmetric(x, 8, axis=-1)  # q (N, 1, C_in), scale (N, 1, 1)
    acc = xp.astype(xp.reshape(xq.q, x.shape), xp.float64) @ xp.astype(w_q, xp.float64)  # (N, C_out), exact
    return xp.astype(acc, xp.float32) * xp.reshape(xq.scale, (-1, 1)) * w_scale


class W8A8Matrix(WeightOnlyMatrix):
    """W8A8: weights int8 per output channel; every product quantizes its input per token (w8a8_matmul)."""

    def __init__(self, w):
        super().__init__(w, bits=8, axis=0)  # q (C_out, 1, C_in), scale (C_out, 1, 1)
        xp = array_namespace(w)
        self.w_q = xp.moveaxis(xp.reshape(self.qt.q, (w.shape[1], w.shape[0])), 0, 1)  # (C_in, C_out)
        self.w_scale = xp.reshape(self.qt.scale, (1, -1))

    def matmul(self, x):
        if self.transposed:
            return x @ self.dequantize()
        return w8a8_matmul(x, self.w_q, self.w_scale)


def llm_int8_matmul(x, w_q, w_scale, threshold=6.0, w=None):
    r"""LLM.int8() (Dettmers et al. 2022): the input columns j with any |x_{n,j}| ≥ threshold go through a float
    matmul with W's rows j; the rest through w8a8_matmul.  The float rows are ``w``'s if given (the paper keeps
    W in fp16), else the int8 rows dequantized.  Returns (y (N, C_out), number of outlier columns)."""
    xp = array_namespace(x)
    outlier = xp.any(xp.abs(x) >= threshold, axis=0)  # (C_in,)
    keep = xp.astype(~outlier, x.dtype)
    y = w8a8_matmul(x * keep, w_q, w_scale)  # outlier columns zeroed: they add nothing to the int8 part
    n = int(xp.sum(xp.astype(outlier, xp.int32)))
    if n:
        idx = xp.nonzero(outlier)[0]
        rows = xp.astype(xp.take(w_q, idx, axis=0), xp.float32) * w_scale if w is None else xp.take(w, idx, axis=0)
        y = y + xp.take(x, idx, axis=1) @ rows  # the float part: (N, n) @ (n, C_out)
    return y, n


class LLMInt8Matrix(W8A8Matrix):
    """LLM.int8(): W8A8 with the outlier input columns (|x| ≥ threshold) in float.  One difference from the paper:
    the float rows of W that meet those columns are the int8 rows dequantized, where the paper keeps W in fp16 —
    so only the activations' outliers escape rounding here, the weights' rows are rounded as in W8A8 (a weight
    store of int8 alone; the paper's version keeps a 16-bit copy of W besides)."""

    def __init__(self, w, threshold=6.0):
        super().__init__(w)
        self.threshold = check_real("threshold", threshold, low=0.0, low_open=True)
        self.products = self.outlier_columns = 0  # counted over every product: how often the float path ran

    def matmul(self, x):
        if self.transposed:
            return x @ self.dequantize()
        y, n = llm_int8_matmul(x, self.w_q, self.w_scale, self.threshold)
        self.products, self.outlier_columns = self.products + 1, self.outlier_columns + n
        return y


# --- SmoothQuant ----------------------------------------------------------------------------------------------


def smoothing_factors(x_absmax, w_absmax, alpha=0.5):
    r"""s_j = \max|X_j|^α / \max|W_j|^{1-α} for each input channel j (Xiao et al. 2023, SmoothQuant).

    Dividing the activations' column j by s_j and multiplying W's row j by it moves the outliers' range from
    the activations (hard to quantize per token) to the weights (easy per channel), the product unchanged.
    x_absmax: (C_in,) over a calibration set; w_absmax: (C_in,) max over the outputs of every linear fed."""
    check_real("alpha", alpha, low=0.0, high=1.0)
    xp = array_namespace(x_absmax)
    s = x_absmax**alpha / w_absmax ** (1.0 - alpha)
    return xp.where((x_absmax > 0) & (w_absmax > 0), s, xp.ones_like(s))


def norm_fed_groups(params):
    """(norm γ path, [the linears it alone feeds]) for every pre-norm block of a Llama-layout tree: the RMSNorm
    before Q, K, V and the one before gate, up — where a per-input-channel scale can be folded into γ."""
    flat = flatten(params)
    groups, feeds = [], (("attn_norm", "attn", ("w_q", "w_k", "w_v")), ("ffn_norm", "ffn", ("w_gate", "w_up")))
    for path in flat:
        for norm, block, names in feeds:
            if path.endswith(f"/{norm}/gamma"):
                prefix = path[: -len(f"{norm}/gamma")]
                groups.append((path, [f"{prefix}{block}/{n}" for n in names if f"{prefix}{block}/{n}" in flat]))
    return groups


def gated_ffn_pairs(params):
    """(w_up path, w_down path) of every gated FFN of a Llama-layout tree, h = act(x W_gate) ⊙ (x W_up), y = h W_down:
    h is linear in W_up's columns, so a scale s_j can move from W_down's input channel j into W_up's column j."""
    flat = flatten(params)
    ffns = [p[: -len("w_down")] for p in flat if p.endswith("/ffn/w_down")]  # "…/ffn/"
    return [(f + "w_up", f + "w_down") for f in ffns if f + "w_up" in flat and f + "w_gate" in flat]


def smooth_fold_up_down(w_up, w_down, s):
    r"""Fold s into a gated FFN's linear branch: W_up' = W_up diag(1/s), W_down' = diag(s) W_down.

    (act(x W_gate) ⊙ (x W_up')) W_down' = (act(x W_gate) ⊙ (x W_up)) W_down exactly (up to rounding): W_down's
    input channel j is divided by s_j, its row j multiplied by it.  Returns (W_up', W_down')."""
    return w_up / s[None, :], w_down * s[:, None]


def smooth_fold(norm_gamma, weights, s):
    r"""Fold s into a norm and the linears it feeds: γ' = γ / s, W'_i = diag(s) W_i.

    RMSNorm(x) γ' W' = RMSNorm(x) γ W exactly (up to rounding): the same function, with activations that
    quantize better.  Returns (γ', [W'_i])."""
    return norm_gamma / s, [w * s[:, None] for w in weights]


def quantize_params(params, make, skip=()):
    """The params tree with every matrix w replaced by make(w) (a :class:`~transformer_np.core.weights.StoredWeight`),
    except under the top-level keys in ``skip`` (e.g. "embed"); vectors (norms, biases) stay float."""
    return replace_weights(params, make, skip)
