r"""Fast paths for NumPy float32: element-wise work at (nearly) memory speed.

NumPy runs ``0.5 * x * (1 + erf(x / sqrt(2)))`` as five passes over five fresh arrays, each one a trip through
main memory, on one core.  Here each element-wise chain is a *kernel* written with ``out=`` and in-place
operations, and :func:`map_chunks` runs it over pieces of the array small enough to stay in the cache, on a
small thread pool (NumPy's ufuncs release the GIL, so the pieces run in parallel).  The formula functions of
``core.nn`` stay the readable reference: each body is its equation, and one predicate, :func:`applies`, routes
NumPy float32 inputs of at least ``MIN_ELEMENTS`` = 65,536 elements to the named kernel here (:func:`gelu`,
:func:`softmax`, :func:`silu`, :func:`silu_mul`, :func:`layer_norm`, :func:`rms_norm`) — as nanoGPT's
``if self.flash: … else: # manual implementation``.  Tests bind every kernel to its plain expression, bit for bit.
One more route, :func:`few_rows`, sends ``core.nn.linear``'s products of 2–8 float32 rows to
:func:`few_rows_matmul` (a verification pass, a small batch): equal within float32 rounding, not bit for bit.

Why 64 Ki: below it the arrays sit in the cache and the plain passes are as fast (or, at a decode step's few
thousand scores, faster: the kernels' bookkeeping is fixed); above it the kernels win.  Median µs on the
project's 2-core machine, plain / kernel (2026-12-02, ``python scripts/fuse_ab.py --micro``):

    elements    softmax        causal-masked    GELU             layer norm       SiLU
    2,700       26 / 30        30 / 38          58 / 57          27 / 41          10 / 14       (a decode step)
    36,864      103 / 106      134 / 141        674 / 625        115 / 117        52 / 47
    147,456     826 / 411      1,095 / 477      3,115 / 2,710    1,079 / 795      518 / 168
    2,359,296   22,844 / 5,520 31,044 / 6,204   31,568 / 19,130  24,622 / 10,465  16,892 / 3,709

End to end (``python scripts/fuse_ab.py``, medians of 5, alternating in one process): the GPT-2-shaped encoder
(S = 512) 952 ms from 64 Ki, 967 from one piece (256 Ki), 1,136 with no kernels at batch 1, 3,456 / 3,472 / 4,298
at batch 4; SmolLM2's 512-token prefill 1,335 / 1,376 / 1,506 and 4,870 / 4,576 / 6,145 — the two thresholds
within the noise of each other, both 11–26% faster than the plain lines alone.

erf in float32, without scipy, within 1 ulp of the correctly rounded value (checked on 4.3 M points: every
scale from 1e-45 to 4.5, both signs, ±0, ±inf, NaN):

    |x| < 1:       erf(x) = x + x·R(x²)                      R a degree-6 polynomial (|error| < 1.2e-9)
    1 ≤ |x| < 4:   erf(x) = 1 − e^{−x²}·P(|x|)/Q(|x|)        P, Q of degree 3 (relative error of erfc < 7.2e-8)
    |x| ≥ 4:       erf(x) = ±1                                (erfc(4) = 1.5e-8 rounds away in float32)

Each branch adds a small correction to an exact leading term, so float32 rounding stays below an ulp.  The
coefficients are fitted by ``scripts/fit_erf.py`` (least squares toward minimax against ``math.erf``).
"""

from __future__ import annotations

import functools
import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from threadpoolctl import ThreadpoolController

ERF_R = (1.28379166e-01, -3.76126272e-01, 1.12836007e-01, -2.68544640e-02, 5.18957211e-03, -8.02116863e-04,
         7.89022348e-05)
ERF_P = (1.00168784e00, 7.59390306e-01, 2.51693395e-01, -6.36622437e-05)
ERF_Q = (1.0, 1.89762658e00, 1.36567177e00, 4.43869683e-01)

CHUNK = 1 << 18  # elements per piece (1 MiB of float32): measured fastest on the project's 2-core machine
MIN_ELEMENTS = 1 << 16  # the size from which core.nn takes these kernels (applies; the table above)
_POOL = []  # one lazily made thread pool


def applies(x, *more):
    """The one rule that sends a core.nn formula to a kernel here: x and every other input a NumPy float32
    array, x of at least MIN_ELEMENTS elements."""
    return (isinstance(x, np.ndarray) and x.dtype == np.float32 and x.size >= MIN_ELEMENTS
            and all(isinstance(a, np.ndarray) and a.dtype == np.float32 for a in more))


@functools.cache
def _controller():
    return ThreadpoolController().select(user_api="blas")


def blas_threads():
    """How many threads BLAS uses (OPENBLAS_NUM_THREADS / OMP_NUM_THREADS, else one per core): the tile products
    use as many."""
    counts = [lib.num_threads for lib in _controller().lib_controllers]
    return max(counts) if counts else os.cpu_count() or 1


class one_blas_thread:
    """BLAS limited to one thread while our own threads each run a product (core.tiled's tiles, the blocks of
    :func:`few_rows_matmul`); restored after."""

    def __enter__(self):
        self.before = [(lib, lib.num_threads) for lib in _controller().lib_controllers]
        for lib, k in self.before:
            if k != 1:
                lib.set_num_threads(1)

    def __exit__(self, *exc):
        for lib, k in self.before:
            if k != 1:
                lib.set_num_threads(k)


# --- x W for a few rows of x: a verification pass, a small batch ---------------------------------------------------
FEW_ROWS = 8  # from 2 up to this many rows of x, core.nn.linear takes few_rows_matmul
BLOCK_ELEMENTS = 1 << 15  # floats of one block of W's rows (128 KiB)


def few_rows(x, w):
    """Whether x (N, C) @ w takes :func:`few_rows_matmul`: NumPy float32, 2 ≤ N ≤ FEW_ROWS, w a contiguous matrix of
    at least MIN_ELEMENTS (C-ordered, or F-ordered: the transpose of one, as a tied output layer Eᵀ)."""
    return (isinstance(x, np.ndarray) and isinstance(w, np.ndarray) and x.dtype == np.float32
            and w.dtype == np.float32 and 2 <= x.shape[0] <= FEW_ROWS and w.size >= MIN_ELEMENTS
            and (w.flags.c_contiguous or w.flags.f_contiguous))


def few_rows_matmul(x, w):
    r"""y = x W for x (N, C) with 2 ≤ N ≤ FEW_ROWS, W (C, R), block by block of W's stored rows:

        W C-ordered (rows = inputs):   y = Σ_b x[:, b] W[b]          blocks b of ~BLOCK_ELEMENTS / R input rows
        W = Vᵀ, V (R, C) C-ordered:     y[:, b] = x V[b]ᵀ              blocks b of ~BLOCK_ELEMENTS / C output rows

    the blocks shared among one thread per core.  Why: for one row, x W is a matrix-vector product that streams W
    once; for 2 … 8 rows OpenBLAS's matrix-matrix product first copies ("packs") the whole of W into its panel
    layout, so 5 rows cost 3.8× one (60 random matrices of SmolLM2's MLP shape, 2 threads: 51 ms against 13); over
    blocks that stay in the cache the packing reads each weight once (25 ms).  A SmolLM2 pass over 5 tokens went
    from 3.1× a 1-token pass to 2.2× (``bench speculative``).  The sums run in another order than
    the plain product's: equal within float32 rounding, not bit for bit (tests/test_fast.py)."""
    N, C = x.shape
    R = w.shape[1]
    out = np.empty((N, R), np.float32)
    if w.flags.c_contiguous:  # accumulate over blocks of inputs; each thread its own partial sum
        k = max(1, BLOCK_ELEMENTS // R)
        blocks = [(a, min(a + k, C)) for a in range(0, C, k)]
        n = min(os.cpu_count() or 1, len(blocks))
        partial = [out] + [np.empty((N, R), np.float32) for _ in range(n - 1)]

        def add(i):
            y, tmp = partial[i], np.empty((N, R), np.float32)
            (a, b), *rest = blocks[i::n]
            np.matmul(x[:, a:b], w[a:b], out=y)
            for a, b in rest:
                y += np.matmul(x[:, a:b], w[a:b], out=tmp)

        with one_blas_thread():
            _parallel(add, list(range(n)))
        for y in partial[1:]:
            out += y
        return out
    v = w.T  # (R, C) C-ordered: blocks of outputs
    k = max(1, BLOCK_ELEMENTS // C)
    with one_blas_thread():
        _parallel(lambda ab: np.matmul(x, v[ab[0]:ab[1]].T, out=out[:, ab[0]:ab[1]]),
                  [(a, min(a + k, R)) for a in range(0, R, k)])
    return out


# --- the kernels core.nn calls by name: each its formula's operations, in the same order (the same bits) ---------
def gelu(x):
    """GELU(x) = ½ x (1 + erf(x/√2)) in one pass per piece (gelu_float32)."""
    return map_chunks(gelu_float32, x)


def softmax(x, mask=None, overwrite_x=False):
    """softmax over the last axis in cache-sized blocks of rows (softmax_rows); a mask applied inside the blocks
    (softmax_masked).  overwrite_x: x's memory may hold the result, where it can (can_overwrite)."""
    if mask is not None and np.ndim(mask) > x.ndim:  # a mask that widens x: the where first, then the blocks
        x, mask, overwrite_x = np.where(mask, x, np.float32(-np.inf)), None, True
    if mask is None:
        return map_rows(softmax_rows, x, out=x if overwrite_x and can_overwrite(x) else None)
    return softmax_masked(x, mask, overwrite_x=overwrite_x)


def silu(x):
    """SiLU(x) = x / (1 + e^{−x}) in place per piece (silu_float32)."""
    return map_chunks(silu_float32, x)


def silu_mul(a, u):
    """SiLU(a) ⊙ u, SwiGLU's gate, in one pass (silu_mul_float32); a and u of one shape."""
    return map_chunks(silu_mul_float32, a, others=(u,))


def layer_norm(x, gamma, beta, eps):
    """(out, x_hat, rstd) of layer norm over the last axis, in blocks of rows (norm_rows)."""
    return norm_rows(x, gamma, beta, eps, centre=True)


def rms_norm(x, gamma, eps):
    """(out, x_hat, rstd) of RMSNorm over the last axis, in blocks of rows (norm_rows)."""
    return norm_rows(x, gamma, None, eps, centre=False)


# --- the machinery: pieces over a thread pool ------------------------------------------------------------------
def map_chunks(kernel, x, out=None, chunk=CHUNK, others=()):
    """out = kernel(x) for an element-wise float32 kernel(x_piece, out_piece, *other_pieces), over pieces of
    ``chunk`` elements on up to os.cpu_count() threads (one thread for an array of fewer than two pieces).
    ``out`` may be x; ``others``: more arrays of x's shape, cut into the same pieces."""
    flat = np.ascontiguousarray(x).reshape(-1)
    res = np.empty_like(flat) if out is None else out.reshape(-1)
    more = [np.ascontiguousarray(o).reshape(-1) for o in others]
    _parallel(lambda s: kernel(flat[s], res[s], *(m[s] for m in more)),
              [slice(i, i + chunk) for i in range(0, flat.size, chunk)])
    return res.reshape(x.shape) if out is None else out


def map_rows(kernel, x, out=None, chunk=CHUNK):
    """out = kernel(x) for a kernel over whole rows of the last axis (a softmax, a norm): x seen as (rows, n),
    split into blocks of about ``chunk`` elements of whole rows."""
    rows = np.ascontiguousarray(x).reshape(-1, x.shape[-1]) if x.size else x.reshape(0, 1)
    res = np.empty_like(rows) if out is None else out.reshape(rows.shape)
    _parallel(lambda s: kernel(rows[s], res[s]), nd_blocks(rows.shape, chunk))
    return res.reshape(x.shape) if out is None else out


def can_overwrite(x):
    """Whether a result may be written over x in place: C-contiguous (so each block of it is one run of memory,
    not a copy) and writeable."""
    return x.flags.c_contiguous and x.flags.writeable


def _parallel(task, parts):
    """task(part) for every part, on up to os.cpu_count() threads, each walking its own share of the parts."""
    n_threads = min(os.cpu_count() or 1, len(parts))
    if n_threads < 2:
        for part in parts:
            task(part)
        return
    if not _POOL:
        _POOL.append(ThreadPoolExecutor(max_workers=os.cpu_count(), thread_name_prefix="transformer_np"))
    groups = [parts[i::n_threads] for i in range(n_threads)]
    list(_POOL[0].map(lambda g: [task(part) for part in g], groups))


def _horner(z, coefficients, out):
    """out = c_0 + c_1 z + … + c_n z^n, evaluated in place."""
    np.multiply(z, np.float32(coefficients[-1]), out=out)
    for c in coefficients[-2:0:-1]:
        out += np.float32(c)
        out *= z
    out += np.float32(coefficients[0])
    return out


def erf_float32(x, out):
    """erf of a float32 array into ``out`` (may be x).  Both branches are computed everywhere and blended by a
    0/1 weight as w·small + (1 − w)·big, exact for w ∈ {0, 1}: a select (np.where) with a data-dependent mask
    costs 2.8 ns an element here, more than all the arithmetic."""
    a = np.abs(x)
    np.minimum(a, np.float32(4.0), out=a)
    t = a * a
    small = _horner(t, ERF_R, np.empty_like(a))
    small *= a
    small += a  # |x| + |x| R(x²): erf(|x|) for |x| < 1
    p, q = _horner(a, ERF_P, np.empty_like(a)), _horner(a, ERF_Q, np.empty_like(a))
    p /= q
    np.negative(t, out=t)
    np.exp(t, out=t)
    p *= t
    np.subtract(np.float32(1.0), p, out=p)  # 1 − e^{−x²} P/Q: erf(|x|) for |x| ≥ 1
    w = np.less(a, np.float32(1.0), out=q, casting="unsafe")  # 1.0 where |x| < 1, else 0.0
    small *= w
    np.subtract(np.float32(1.0), w, out=w)
    p *= w
    small += p
    return np.copysign(small, x, out=out)  # erf is odd (and keeps the sign of -0.0)


def gelu_float32(x, out):
    r"""GELU(x) = ½ x (1 + erf(x/√2)) of a float32 piece into ``out`` — the scaling, the erf and the product in
    one pass over the piece while it is in the cache."""
    z = np.multiply(x, np.float32(1 / math.sqrt(2.0)))
    erf_float32(z, z)
    z += np.float32(1.0)
    z *= x
    return np.multiply(z, np.float32(0.5), out=out)


def softmax_rows(x, out):
    r"""softmax over the last axis of a (rows, n) float32 block into ``out`` (may be x): the max, the shifted
    exponentials and their sum in three passes over a block that stays in the cache — the same operations, in
    the same order, as core.nn.softmax (so the same bits), rows of -inf only giving zeros."""
    m = np.max(x, axis=1, keepdims=True)
    m[m == -np.inf] = 0.0  # a row of -inf only (masked): any finite shift works
    np.subtract(x, m, out=out)
    np.exp(out, out=out)
    s = np.sum(out, axis=1, keepdims=True)
    s[s == 0] = 1.0  # a row of -inf only: 0 / 1 = 0, not NaN
    return np.divide(out, s, out=out)


def softmax_masked(x, mask, chunk=CHUNK, overwrite_x=False):
    r"""softmax over the last axis of x (..., T, S) where ``mask`` (bool, broadcastable to x) is true, −inf (so 0)
    elsewhere — core.nn.softmax's ``where`` fused into the blocks: each block of rows is filled with −inf, the
    unmasked scores copied in (a structured mask such as the causal one copies in long runs: 0.4 ns an element
    against np.where's 1.1), then :func:`softmax_rows` in place.  The same bits as the plain expression.  A
    block is whole (T, S) matrices where they are small (a batch of short sentences: many of them to a block),
    else rows of one.  overwrite_x: the result is written over x, whose masked entries are set
    to −inf block by block instead — no second array of x's size (ignored for an x that is not C-contiguous and
    writeable)."""
    overwrite_x = overwrite_x and can_overwrite(x)
    xs = x if overwrite_x else np.ascontiguousarray(x)
    full = np.broadcast_to(mask, xs.shape)  # a view: the mask is never expanded
    out = xs if overwrite_x else np.empty(xs.shape, xs.dtype)

    def task(index):
        o = out[index]  # contiguous: whole trailing axes after one slice
        if overwrite_x:
            np.copyto(o, -np.inf, where=~full[index])
        else:
            o.fill(-np.inf)
            np.copyto(o, xs[index], where=full[index])
        rows = o.reshape(-1, xs.shape[-1])
        softmax_rows(rows, rows)

    _parallel(task, nd_blocks(xs.shape, chunk))
    return out


def nd_blocks(shape, chunk=CHUNK):
    """Index tuples cutting an array of ``shape`` into contiguous blocks of about ``chunk`` elements, never
    splitting the last axis: integers on the leading axes, then one slice on the first axis whose items hold at
    most ``chunk`` elements (or on the second-to-last axis, one row of the last at least).  For a (rows, width)
    array: slices of whole rows (map_rows, norm_rows)."""
    if len(shape) < 2:
        return [(slice(None),)]
    item = math.prod(shape)
    for axis in range(len(shape) - 1):
        item //= max(shape[axis], 1)  # elements in one index of this axis
        if item <= chunk or axis == len(shape) - 2:
            break
    per = max(1, chunk // max(item, 1))
    return [(*lead, slice(i, i + per)) for lead in np.ndindex(*shape[:axis]) for i in range(0, shape[axis], per)]


def silu_float32(x, out):
    r"""SiLU(x) = x / (1 + e^{−x}) of a float32 piece into ``out``, in place: the same operations as core.nn.silu."""
    np.negative(x, out=out)
    np.exp(out, out=out)
    out += np.float32(1.0)
    return np.divide(x, out, out=out)


def silu_mul_float32(a, out, u):
    r"""SiLU(a) ⊙ u (SwiGLU's gate times its up projection) of float32 pieces into ``out``: one pass, no
    intermediate array of the size of a."""
    silu_float32(a, out)
    out *= u
    return out


def norm_rows(x, gamma, beta, eps, centre, chunk=CHUNK):
    r"""Layer norm (``centre``: x − μ first) or RMSNorm over the last axis of a float32 x, in blocks of whole rows
    that stay in the cache, on the thread pool: (out, x_hat, rstd) with x_hat = (x [− μ]) · rstd,
    rstd = 1/√(mean((x [− μ])²) + ε), out = x_hat γ [+ β] — core.nn's operations in the same order, so the same
    bits, without the full-size temporaries (x − μ, its square)."""
    C = x.shape[-1]
    rows = np.ascontiguousarray(x).reshape(-1, C)
    out, x_hat = np.empty_like(rows), np.empty_like(rows)
    rstd = np.empty((rows.shape[0], 1), rows.dtype)
    eps = np.float32(eps)

    def task(s):
        xb, xh, r = rows[s], x_hat[s], rstd[s]
        if centre:
            np.subtract(xb, np.mean(xb, axis=1, keepdims=True), out=xh)  # x − μ
            xb = xh
        np.mean(np.multiply(xb, xb, out=out[s]), axis=1, keepdims=True, out=r)  # mean of squares (out as scratch)
        r += eps
        np.sqrt(r, out=r)
        np.divide(np.float32(1.0), r, out=r)
        np.multiply(xb, r, out=xh)
        np.multiply(xh, gamma, out=out[s])
        if beta is not None:
            out[s] += beta

    _parallel(task, nd_blocks(rows.shape, chunk))
    lead = x.shape[:-1]
    return out.reshape(x.shape), x_hat.reshape(x.shape), rstd.reshape(*lead, 1)


def rope_pairs(x, cos, sin):
    r"""RoPE in the "pairs" layout for float32 x (..., T, D) with cos, sin (…, T, D/2) already in float32:
    (a cos − b sin, a sin + b cos) written straight into the even and odd features of one output array — the
    same products and sums as core.embeddings.rope, without its stack and reshape copies."""
    out = np.empty_like(x)
    a, b = x[..., 0::2], x[..., 1::2]
    even, odd = out[..., 0::2], out[..., 1::2]
    t = np.multiply(b, sin)
    np.multiply(a, cos, out=even)
    even -= t
    np.multiply(b, cos, out=t)
    np.multiply(a, sin, out=odd)
    odd += t
    return out
