r"""Products that dequantize a stored weight tile by tile: y = x Wᵀ with W kept as codes, never widened whole.

A weight whose rows are the product's outputs (R = C_out rows of C = C_in values, the layout GGUF files and
torch's nn.Linear use) is held as *row codes*:

    W[r, i] = scale[r, ⌊i/g⌋] · value(q[r, i]) + offset[r, ⌊i/g⌋]           (one group of g values shares a scale)

with ``value`` one of the formats below.  Decoding one token reads every weight once, so it is bound by the bytes
it reads; a weight of 1 byte (int8) or ½ byte (4-bit) decodes faster than float32's 4 bytes only if nothing
wider than a tile is ever written.  So ``x @ W`` runs, for each tile of rows r0…r1:

    tile      = value(q[r0:r1]) · scale           (widened into a buffer of ~TILE_ELEMENTS float32, in cache)
    y[:, r0:r1] = x @ tileᵀ  (BLAS)  + x̄ @ offset[r0:r1]ᵀ     (x̄[n, j] = Σ_{i ∈ group j} x[n, i]: the offsets'
                                                                    share, one small product)

and the tiles are split over a pool of threads, each with its own buffer and BLAS limited to one thread (two
Python threads calling a multi-threaded BLAS at once serialise; the casts, gathers and one-thread BLAS calls
below release the GIL and run side by side).  One scale per row (g = C) multiplies y's columns instead of the
tile.  llama.cpp fuses the same steps in registers; here they are fused in cache.

    format      value(q)                                   bytes a weight (codes)     tile step
    float32     q                                          4                          none: BLAS on the rows
    bfloat16    the float whose top 16 bits are q          2                          q → 32 bits, shifted up 16
    float16,    sign, exponent, mantissa of q moved to     2, 1                       shift up, arithmetic
    float8_e5m2 float32's places, times 2^(127 − bias)                                shift down, mask,
                (table[q] if q holds an inf or NaN)                                   multiply
    float8_e4m3fn  table[q] (the format's 256 values)      1                          gather from the table
    int8/uint8  q                                          1                          cast
    int4/uint4/ two values a byte: value i of a row in the  ½                          each half: the nibbles
    offset4     low nibble of byte i, value i + C/2 in the                            (shift, mask), cast —
                high one: n − 16·[n ≥ 8] / n / n − 8                                  two long runs

(add the scales' and offsets' bytes per group).  At decode (a few rows of x) per-group scales multiply each
group's small product instead of the tile: y[n, r] = Σ_j s[r, j] (x_j · q_rj).  Only NumPy arrays take this
path; other libraries' stored weights dequantize for the product (:meth:`RowCodes.dequantize`), which is what a
GPU's bandwidth affords.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import threading
import time

import ml_dtypes
import numpy as np

from .checks import check_choice, check_positive_int
from .fast import blas_threads, one_blas_thread

TILE_ELEMENTS = 2**18  # floats of one thread's tile buffer: 1 MB, inside a core's 2 MB L2 (scripts/tiles_ab.py)
GROUP_PRODUCT_ROWS = 8  # up to this many rows of x, scales per group multiply the group products, not the tile
MIN_TILES_PER_THREAD = 2  # fewer tiles than 2 a thread: one thread (waking another costs more than it saves)
FLOAT_FORMATS = ("float32", "float16", "bfloat16", "float8_e4m3fn", "float8_e5m2")  # the narrow float formats
NIBBLE_VALUES = {  # value of nibble n = 0…15 for each 4-bit format
    "int4": lambda n: np.where(n >= 8, n - 16, n),  # two's complement (efficient.quantize.pack_int4)
    "uint4": lambda n: n,  # asymmetric codes, and GGUF's Q4_1
    "offset4": lambda n: n - 8,  # GGUF's Q4_0: q − 8
}
FORMATS = ("float32", "bfloat16", "float16", "float8_e4m3fn", "float8_e5m2", "int8", "uint8", *NIBBLE_VALUES)
# (total bits N, exponent bits E) of the narrow floats widened by re-biasing (see RowCodes.widen): code bits moved
# to float32's places — the sign to bit 31, exponent and mantissa to the top of theirs — then one multiply by
# 2^(127 − bias) turns the exponent's bias into float32's (exact, subnormals included); codes with the exponent all
# ones (inf, NaN) have no such image, so a matrix holding one is gathered from the code table instead.
# float8_e4m3fn stays with the table: its subnormals (below 2^-6, a quarter of a weight matrix's values) make the
# multiply take the CPU's slow path for subnormal operands — 7.8 ns a value against the table's 1.5–2
REBIASED = {"float16": (16, 5), "float8_e5m2": (8, 5)}
CODE_DTYPES = {"float32": np.float32, "bfloat16": np.uint16, "float16": np.float16, "float8_e4m3fn": np.uint8,
               "float8_e5m2": np.uint8, "int8": np.int8, "uint8": np.uint8,
               **{k: np.uint8 for k in NIBBLE_VALUES}}


def pack_halves(values):
    """(R, C) integers whose low 4 bits are the nibbles -> (R, C/2) bytes: value i of a row in the low nibble of
    byte i, value i + C/2 in the high one — the layout whose two halves widen in two long runs."""
    values = np.asarray(values).astype(np.uint8) & 0x0F  # two's complement keeps the low 4 bits of a negative value
    h = values.shape[1] // 2
    return np.ascontiguousarray(values[:, :h] | (values[:, h:] << 4))


def _low_nibbles(q, fmt, out):
    """The values in the low nibbles of bytes q, into the uint8 buffer out (read as int8 where they are signed)."""
    if fmt == "int4":  # shifted to the top of the byte, then back with the sign: n − 16·[n ≥ 8]
        np.left_shift(q, 4, out=out)
        return np.right_shift(out.view(np.int8), 4, out=out.view(np.int8))
    np.bitwise_and(q, 0x0F, out=out)
    return out if fmt == "uint4" else np.subtract(out.view(np.int8), 8, out=out.view(np.int8))  # offset4: n − 8


def _high_nibbles(q, fmt, out):
    """The values in the high nibbles of bytes q, into the uint8 buffer out."""
    if fmt == "int4":  # an arithmetic shift of the byte read as int8 keeps the sign
        return np.right_shift(q.view(np.int8), 4, out=out.view(np.int8))
    np.right_shift(q, 4, out=out)
    return out if fmt == "uint4" else np.subtract(out.view(np.int8), 8, out=out.view(np.int8))


def storage_dtype(name):
    """The NumPy dtype of a storage format name (bfloat16 and float8 from ml_dtypes)."""
    check_choice("format", name, FLOAT_FORMATS)
    return np.dtype(name if name in ("float32", "float16") else getattr(ml_dtypes, name))


@functools.cache
def code_table(name):
    """The float32 value of every bit pattern of format ``name`` (NumPy, 2^bits entries): code c holds
    code_table(name)[c].  The finite non-negative values are codes 0 … n−1, in increasing order.  The tile
    product gathers float8_e4m3fn values from it, and float16/float8_e5m2 values of a matrix holding an inf or
    a NaN (a gather: 1.5–2 ns a value here, NumPy's own float16 cast 2.4; re-biasing the exponent: 0.8)."""
    dt = storage_dtype(name)
    return np.arange(2 ** (8 * dt.itemsize), dtype=f"u{dt.itemsize}").view(dt).astype(np.float32)


@dataclasses.dataclass(frozen=True, eq=False)
class RowCodes:
    r"""A (R, C) matrix as codes, one row per output: W[r, i] = scale[r, ⌊i/g⌋] · value(q[r, i]) + offset[r, ⌊i/g⌋].

    codes: (R, C) of CODE_DTYPES[fmt], or (R, C/2) bytes for the 4-bit formats (:func:`pack_halves`);
    scale, offset: (R, C/g) float32, or float16 as GGUF files keep them (widened exactly where they are used), or
    None (1 and 0); group: g, which divides C."""

    codes: np.ndarray
    fmt: str
    scale: np.ndarray | None = None
    offset: np.ndarray | None = None
    group: int | None = None

    def __post_init__(self):
        check_choice("fmt", self.fmt, FORMATS)
        if self.codes.dtype != CODE_DTYPES[self.fmt] or self.codes.ndim != 2 or not self.codes.flags.c_contiguous:
            raise ValueError(f"codes of format {self.fmt} must be a C-contiguous 2-D {np.dtype(CODE_DTYPES[self.fmt])}"
                             f" array, got {self.codes.dtype} of shape {self.codes.shape}")
        R, C = self.shape
        g = check_positive_int("group", self.group if self.group is not None else C)
        if C % g:
            raise ValueError(f"group={g} must divide the row length {C}")
        for name in ("scale", "offset"):
            a = getattr(self, name)
            if a is not None and (a.shape != (R, C // g) or a.dtype not in (np.float16, np.float32)):
                raise ValueError(f"{name} must be float16 or float32 of shape {(R, C // g)}, got {a.dtype} {a.shape}")

    @property
    def shape(self):
        R, n = self.codes.shape
        return (R, 2 * n) if self.fmt in NIBBLE_VALUES else (R, n)

    @property
    def n_groups(self):
        return 1 if self.group is None else self.shape[1] // self.group

    @property
    def nbytes(self):
        """Bytes held: codes, scales, offsets."""
        return sum(a.nbytes for a in (self.codes, self.scale, self.offset) if a is not None)

    @functools.cached_property
    def rebiased(self):
        """Whether a narrow float's codes widen by re-biasing the exponent (none is an inf or a NaN)."""
        if self.fmt not in REBIASED:
            return False
        n, e = REBIASED[self.fmt]
        exponent = ((1 << e) - 1) << (n - 1 - e)
        return not np.any((self.codes.view(f"u{n // 8}") & exponent) == exponent)

    def widen(self, r0, r1, out, scaled=True):
        """out[: r1 - r0] = value(q[r0:r1]) · scale (the offsets are left to the product; ``scaled=False``: the
        scales of groups too); returns that view."""
        q, t = self.codes[r0:r1], out[: r1 - r0]
        if self.fmt == "float32":
            return q  # nothing to widen: BLAS reads the rows themselves
        if self.fmt == "bfloat16":  # the 16 bits are the float's top half: widened to 32 bits, shifted up
            bits = t.view(np.uint32)
            np.copyto(bits, q)
            np.left_shift(bits, 16, out=bits)
        elif self.fmt in NIBBLE_VALUES:  # byte i: value i in its low nibble, value i + C/2 in its high one
            h, nib = q.shape[1], _nibble_buffer(q.shape)
            for half, nibble in ((t[:, :h], _low_nibbles), (t[:, h:], _high_nibbles)):
                np.copyto(half, nibble(q, self.fmt, nib), casting="unsafe")
        elif self.fmt in REBIASED and self.rebiased:
            _rebias(q, self.fmt, t)
        elif self.fmt != "int8" and self.fmt != "uint8":  # a float16/float8 matrix holding inf or NaN: a gather
            np.take(code_table(self.fmt), q.view(f"u{q.itemsize}"), out=t, mode="wrap")  # every code is in the table
        else:
            np.copyto(t, q, casting="unsafe")
        if scaled and self.scale is not None and self.n_groups > 1:
            g3 = t.reshape(r1 - r0, self.n_groups, -1)
            np.multiply(g3, self.scale[r0:r1, :, None], out=g3)
        return t

    def dequantize(self, rows=None):
        """The float32 matrix (R, C), or only its ``rows`` (an int array)."""
        if rows is not None:
            rows = np.asarray(rows)
            part = dataclasses.replace(self, codes=np.ascontiguousarray(self.codes[rows]),
                                       scale=None if self.scale is None else self.scale[rows],
                                       offset=None if self.offset is None else self.offset[rows])
            return part.dequantize()
        R, C = self.shape
        w = np.empty((R, C), np.float32)
        w[...] = self.widen(0, R, w)
        if self.scale is not None and self.n_groups == 1:
            w *= self.scale
        if self.offset is not None:
            w += np.repeat(self.offset, C // self.n_groups, axis=1)
        return w


def _rebias(q, fmt, out):
    r"""out = the float32 values of narrow-float codes q (no inf or NaN among them), in five passes in cache:

        b = q << (32 − N)                sign at bit 31, exponent and mantissa just below it (int32)
        b = b >> (8 − E)  (arithmetic)   exponent and mantissa at float32's places; bits 30 … 31 − (8 − E) copy the sign
        b = b & mask                     … and are cleared
        out = float(b) · 2^(127 − bias)  float32's exponent bias (bias = 2^(E−1) − 1), exact for every finite code"""
    n, e = REBIASED[fmt]
    down = 8 - e
    mask = np.int32(np.uint32(~(((1 << down) - 1) << (31 - down)) & 0xFFFFFFFF).view(np.int32))
    bits = out.view(np.int32)
    np.copyto(bits, q.view(f"u{n // 8}"))
    np.left_shift(bits, 32 - n, out=bits)
    np.right_shift(bits, down, out=bits)
    np.bitwise_and(bits, mask, out=bits)
    np.multiply(out, np.float32(2.0 ** (127 - (2 ** (e - 1) - 1))), out=out)
    return out


# --- the product --------------------------------------------------------------------------------------------


def applies(x):
    """Whether ``x @ W`` takes the tile path: NumPy float32 activations (other libraries and float64 dequantize)."""
    return isinstance(x, np.ndarray) and x.dtype == np.float32


def linear(x, w, threads=None):
    """x (..., C) @ Wᵀ for W :class:`RowCodes` (R, C): :func:`matmul` over the rows of x.  Returns (..., R)."""
    if x.shape[-1] != w.shape[1]:
        raise ValueError(f"x's last dim must be the weight's row length {w.shape[1]}, got shape {tuple(x.shape)}")
    y = matmul(x.reshape(-1, x.shape[-1]), w, threads)
    return y.reshape(*x.shape[:-1], w.shape[0])


def matmul(x, w, threads=None):
    r"""y = x Wᵀ for x (N, C) float32 and W :class:`RowCodes` (R, C): tile by tile over the rows of W, the tiles
    split over ``threads`` threads (default: as many as BLAS would use).  Returns (N, R) float32."""
    R, C = w.shape
    x = np.ascontiguousarray(x, dtype=np.float32)
    N = x.shape[0]
    y = np.empty((N, R), np.float32)
    xbar = x.reshape(N, w.n_groups, -1).sum(axis=-1) if w.offset is not None else None
    rows = max(8, TILE_ELEMENTS // C // 8 * 8)
    tiles = [(r0, min(r0 + rows, R)) for r0 in range(0, R, rows)]
    n = min(threads or blas_threads(), len(tiles) // MIN_TILES_PER_THREAD) if threads != 1 else 1

    by_group = w.scale is not None and w.n_groups > 1 and N <= GROUP_PRODUCT_ROWS
    xg = x.reshape(N, w.n_groups, -1).transpose(1, 0, 2) if by_group else None  # (n_groups, N, g)

    def work(part):
        buf = _buffer(rows * C)
        for r0, r1 in part:
            t = w.widen(r0, r1, buf.reshape(-1)[: rows * C].reshape(rows, C), scaled=not by_group)
            if by_group:  # y[n, r] = Σ_j s[r, j] (x_j · q_rj): one BLAS product per group, then the scales
                p = np.matmul(xg, t.reshape(r1 - r0, w.n_groups, -1).transpose(1, 2, 0))  # (n_groups, N, R)
                np.einsum("jnr,rj->nr", p, w.scale[r0:r1], out=y[:, r0:r1])
            else:
                np.matmul(x, t.T, out=y[:, r0:r1])
            if w.scale is not None and w.n_groups == 1:
                y[:, r0:r1] *= w.scale[r0:r1, 0]
            if xbar is not None:
                y[:, r0:r1] += xbar @ w.offset[r0:r1].T

    if n <= 1:
        work(tiles)
        return y
    parts = [tiles[i::n] for i in range(n)]
    with one_blas_thread():
        futures = [_pool(n - 1).submit(work, p) for p in parts[1:]]
        work(parts[0])
        for f in futures:
            f.result()
    return y


_local = threading.local()


def _buffer(size):
    """This thread's tile buffer, at least ``size`` float32 (kept between products)."""
    buf = getattr(_local, "buf", None)
    if buf is None or buf.size < size:
        buf = _local.buf = np.empty(size, np.float32)
    return buf


def _nibble_buffer(shape):
    """This thread's buffer for one half of a 4-bit tile's values, uint8 of ``shape``."""
    buf = getattr(_local, "nibbles", None)
    size = shape[0] * shape[1]
    if buf is None or buf.size < size:
        buf = _local.nibbles = np.empty(size, np.uint8)
    return buf[:size].reshape(shape)


@functools.cache
def _pool(n):
    """n worker threads, made once per process (the main thread works beside them; core.fast's pool of
    os.cpu_count() workers measured 57 → 60–71 ms for a decode step's int8 products, scripts/tiles_ab.py)."""
    return concurrent.futures.ThreadPoolExecutor(max_workers=n, thread_name_prefix="tiles")


def widen_ns_per_value(fmt, shape=(1536, 576), repeat=5, seed=0):
    """Nanoseconds one thread takes per value for a product's step before BLAS — widening the codes of ``fmt`` to
    float32, a tile at a time into a buffer that stays in cache — best of ``repeat`` passes over a (R, C) matrix
    of random codes — a float format's from values N(0, 0.05²) — (a measurement, for chapter 11 and ``bench
    llm``; float32 is timed copying its rows, what reading 4 bytes a value costs).  The scales of groups are left
    out: they multiply the group products."""
    check_choice("fmt", fmt, FORMATS)
    R, C = shape
    rng = np.random.default_rng(seed)
    width = C // 2 if fmt in NIBBLE_VALUES else C
    if fmt in FLOAT_FORMATS:  # a weight's values: N(0, 0.05²), subnormals of the narrow formats included
        values = (0.05 * rng.standard_normal((R, C))).astype(storage_dtype(fmt))
        codes = RowCodes(values.view(CODE_DTYPES[fmt]), fmt)
    else:
        codes = RowCodes(rng.integers(0, 256, (R, width), dtype=np.uint8).view(CODE_DTYPES[fmt]), fmt)
    rows = max(8, TILE_ELEMENTS // C // 8 * 8)
    buf = np.empty((rows, C), np.float32)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for r0 in range(0, R, rows):
            r1 = min(r0 + rows, R)
            if fmt == "float32":
                np.copyto(buf[: r1 - r0], codes.codes[r0:r1])
            else:
                codes.widen(r0, r1, buf, scaled=False)
        best = min(best, time.perf_counter() - t0)
    return 1e9 * best / (R * C)
