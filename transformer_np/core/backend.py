"""The one place that knows about array libraries.

Math code asks its inputs for their namespace (``xp = array_namespace(x)``) and uses only the Python
array-API standard through it.  The few things the standard lacks live here, mapped per library:

* :func:`erf` (exact GELU): for NumPy float32 our own evaluation (``core.fast``, within 1 ulp, in cache-sized
  pieces over threads), for float64 ``scipy.special`` when installed (else ``math.erf``); ``cupyx.scipy.special``
  for CuPy, ``torch.special`` for torch; other namespaces get a series / continued-fraction evaluation written
  with standard operations only (|error| < 1e-13 in float64, tested).
* :func:`take_rows` (embedding lookup): ``table[ids]`` with ids of any shape, and its backward
  :func:`scatter_add_rows` (``np.add.at``, ``index_add_``, ``cupyx.scatter_add``, or a one-hot product).
* :func:`keep_mask` (dropout): Bernoulli draws from a ``np.random.Generator``, moved to the data's device.
* :func:`to_numpy` / :func:`to_backend`: the explicit boundaries where data changes library.
"""

from __future__ import annotations

import math

import numpy as np
from array_api_compat import array_namespace as _compat_namespace
from array_api_compat import (
    device,
    is_cupy_namespace,
    is_numpy_namespace,
    is_torch_namespace,
)

from .fast import erf_float32, map_chunks
from .tree import HoldsParams, tree_map

__all__ = ["array_namespace", "contiguous", "device", "erf", "keep_mask", "scatter_add_rows", "take_rows",
           "to_numpy", "to_backend"]

BACKENDS = ("numpy", "torch", "cupy")
_NUMPY = _compat_namespace(np.empty(0))  # array_api_compat's NumPy namespace


def array_namespace(*arrays):
    """The array-API namespace of the arrays (``array_api_compat.array_namespace``), answered at once when they
    are all plain NumPy arrays — the common case, asked about 1,100 times in one decode step of SmolLM2, where
    the general lookup cost about 1.5 µs each."""
    if arrays and all(type(a) is np.ndarray for a in arrays):
        return _NUMPY
    return _compat_namespace(*arrays)


def erf(x):
    r"""Error function, erf(x) = 2/\sqrt{\pi} \int_0^x e^{-t^2} dt, elementwise, in x's own library."""
    xp = array_namespace(x)
    if is_numpy_namespace(xp):
        return _erf_numpy(x)
    if is_torch_namespace(xp):
        import torch

        return torch.special.erf(x)
    if is_cupy_namespace(xp):
        from cupyx.scipy.special import erf as _erf

        return _erf(x)
    return _erf_standard(x)


def _erf_numpy(x):
    """float32: our evaluation (core.fast, within 1 ulp); float64 and others: scipy.special.erf where scipy is
    installed (≤ 1 ulp), else math.erf element by element (slow, exact)."""
    if x.dtype == np.float32:
        return map_chunks(erf_float32, x)
    try:
        from scipy.special import erf as _erf
    except ImportError:
        return np.frompyfunc(math.erf, 1, 1)(x).astype(x.dtype)
    return np.asarray(_erf(x))


def _erf_standard(x):
    """erf with standard array-API operations only: Taylor series for |x| < 2, else the
    continued fraction of erfc (Abramowitz & Stegun 7.1.5 and 7.1.14)."""
    xp = array_namespace(x)
    a = xp.abs(x)
    small = xp.minimum(a, xp.asarray(2.0, dtype=x.dtype, device=device(x)))
    # erf(a) = 2/sqrt(pi) * sum_n (-1)^n a^(2n+1) / (n! (2n+1))
    term, series = small, small
    for n in range(1, 60):
        term = -term * small * small / n
        series = series + term / (2 * n + 1)
    series = series * (2.0 / math.sqrt(math.pi))
    big = xp.maximum(a, xp.asarray(2.0, dtype=x.dtype, device=device(x)))
    # erfc(a) = exp(-a^2)/sqrt(pi) * 1/(a + (1/2)/(a + 1/(a + (3/2)/(a + 2/(a + ...)))))
    frac = big
    for n in range(80, 0, -1):
        frac = big + (n / 2) / frac
    tail = 1.0 - xp.exp(-big * big) / (math.sqrt(math.pi) * frac)
    return xp.sign(x) * xp.where(a < 2.0, series, tail)


def contiguous(x):
    """x in C order (row-major, the last axis fastest), copied only if it is not already: one memory layout for
    arrays that different paths build, so that the matrix products reading them round identically."""
    xp = array_namespace(x)
    if is_numpy_namespace(xp):
        return np.ascontiguousarray(x)
    if is_torch_namespace(xp):
        return x.contiguous()
    if is_cupy_namespace(xp):
        import cupy

        return cupy.ascontiguousarray(x)
    return x


def take_rows(table, ids):
    """table[ids]: rows of a (V, C) array for integer ids of any shape -> (*ids.shape, C).  (A stored weight,
    core.weights', looks up its own rows: token_embedding asks it.)"""
    xp = array_namespace(table, ids)
    flat = xp.reshape(ids, (-1,))
    rows = xp.take(table, flat, axis=0)
    return xp.reshape(rows, (*ids.shape, table.shape[-1]))


def scatter_add_rows(n_rows, ids, values):
    """out[ids[i]] += values[i] for every i (repeated ids add up): the backward of take_rows.
    ids: int (N,), values: (N, C) -> (n_rows, C)."""
    xp = array_namespace(values)
    if is_numpy_namespace(xp):
        out = np.zeros((n_rows, values.shape[-1]), dtype=values.dtype)
        np.add.at(out, ids, values)
        return out
    if is_torch_namespace(xp):
        out = xp.zeros((n_rows, values.shape[-1]), dtype=values.dtype, device=device(values))
        return out.index_add_(0, ids, values)
    if is_cupy_namespace(xp):
        import cupyx

        out = xp.zeros((n_rows, values.shape[-1]), dtype=values.dtype)
        cupyx.scatter_add(out, ids, values)
        return out
    onehot = xp.astype(ids[:, None] == xp.arange(n_rows, device=device(ids))[None, :], values.dtype)  # (N, V)
    return onehot.mT @ values


def keep_mask(rng, shape, keep_prob, like):
    """Bernoulli(keep_prob) booleans of ``shape`` drawn from a np.random.Generator, in the library and on the
    device of ``like`` (random numbers come from NumPy, so every backend draws the same mask)."""
    xp = array_namespace(like)
    return xp.asarray(rng.random(tuple(shape)) < keep_prob, device=device(like))


def to_numpy(x):
    """Bring an array of any supported library back to a NumPy array (an explicit boundary)."""
    if isinstance(x, np.ndarray):
        return x
    xp = array_namespace(x)
    if is_torch_namespace(xp):
        return x.detach().cpu().numpy()
    if is_cupy_namespace(xp):
        return x.get()
    info = getattr(xp, "__array_namespace_info__", None)
    if info is not None and hasattr(x, "to_device"):  # any other array-API library: via its host device
        x = x.to_device(info().default_device())
    return np.asarray(x)


def _backend_module(name):
    if name == "numpy":
        return np
    if name == "torch":
        try:
            import torch
        except ImportError as e:  # pragma: no cover - depends on the machine
            raise ImportError("backend 'torch' needs PyTorch: pip install torch") from e
        return torch
    if name == "cupy":
        try:
            import cupy
        except ImportError as e:
            raise ImportError(
                "backend 'cupy' needs CuPy and an NVIDIA GPU: pip install 'transformer_np[gpu]'"
            ) from e
        try:
            cupy.cuda.runtime.getDeviceCount()
        except Exception as e:  # noqa: BLE001 - CuPy raises its own CUDA error types
            raise RuntimeError(f"backend 'cupy' is installed but no usable GPU was found: {e}") from e
        return cupy
    raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")


def to_backend(tree, backend):
    """Map every array leaf of a params tree (nested dicts/lists) onto ``backend``
    ("numpy", "torch" or "cupy"), keeping dtypes.  Non-array leaves are kept as they are.  A model (a config and
    a params tree, core.tree.HoldsParams) gives a copy holding the moved tree."""
    mod = _backend_module(backend)
    if isinstance(tree, HoldsParams):
        return tree.with_params(to_backend(tree.params, backend))

    def move(leaf):
        if not _is_array(leaf):
            return leaf
        arr = to_numpy(leaf)
        if backend == "torch":
            return mod.from_numpy(np.ascontiguousarray(arr))
        return mod.asarray(arr)

    return tree_map(move, tree)


def _is_array(x):
    return hasattr(x, "shape") and hasattr(x, "dtype")
