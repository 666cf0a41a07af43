"""Input checks shared by the public functions.

Each raises ValueError or TypeError naming the argument, what was expected and what was given:
a wrong answer that looks plausible is worse than a clear error.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .backend import array_namespace


def check_float(name, x):
    """x must be an array of real floating dtype."""
    if type(x) is np.ndarray and x.dtype.kind == "f":  # NumPy's real floating dtypes: the common case, at once
        return
    if not (hasattr(x, "shape") and hasattr(x, "dtype")):
        raise TypeError(f"{name} must be an array, got {type(x).__name__}")
    xp = array_namespace(x)
    try:
        floating = xp.isdtype(x.dtype, "real floating")
    except TypeError:  # a dtype the library does not know as such (ml_dtypes' bfloat16 in NumPy)
        floating = False
    if not floating:
        raise TypeError(f"{name} must have a real floating dtype, got {x.dtype}")


def check_ndim(name, x, min_ndim):
    if x.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dims, got shape {tuple(x.shape)}")


def check_last_dim(name, x, size, what="last dim"):
    if x.shape[-1] != size:
        raise ValueError(f"{name} {what} must be {size}, got shape {tuple(x.shape)}")


def check_ids(name, ids, vocab_size):
    """ids must be integers in [0, vocab_size): NumPy would silently wrap negative ids."""
    if not (hasattr(ids, "shape") and hasattr(ids, "dtype")):
        raise TypeError(f"{name} must be an integer array, got {type(ids).__name__}")
    xp = array_namespace(ids)
    if not xp.isdtype(ids.dtype, "integral"):
        raise TypeError(f"{name} must have an integer dtype, got {ids.dtype}")
    if math.prod(ids.shape) == 0:
        return
    lo, hi = int(xp.min(ids)), int(xp.max(ids))
    if lo < 0 or hi >= vocab_size:
        raise ValueError(
            f"{name} must lie in [0, {vocab_size}) (vocabulary size {vocab_size}), "
            f"got values in [{lo}, {hi}]"
        )


def broadcast_shape(a, b):
    """NumPy broadcasting of two shapes, or None when they do not broadcast."""
    out = []
    for i in range(1, max(len(a), len(b)) + 1):
        x = a[-i] if i <= len(a) else 1
        y = b[-i] if i <= len(b) else 1
        if x != y and 1 not in (x, y):
            return None
        out.append(max(x, y) if 1 not in (x, y) else x * y)
    return tuple(reversed(out))


def check_mask(name, mask, target_shape):
    """mask must be boolean and broadcast to target_shape (..., T, S) without growing it."""
    if mask is None:
        return
    if not (hasattr(mask, "shape") and hasattr(mask, "dtype")):
        raise TypeError(f"{name} must be a boolean array, got {type(mask).__name__}")
    xp = array_namespace(mask)
    if not xp.isdtype(mask.dtype, "bool"):
        raise TypeError(
            f"{name} must be boolean (True where a query may attend to a key), got dtype {mask.dtype}"
        )
    if broadcast_shape(tuple(mask.shape), tuple(target_shape)) != tuple(target_shape):
        raise ValueError(
            f"{name} of shape {tuple(mask.shape)} does not broadcast to (..., T, S) = {tuple(target_shape)}"
        )


def check_bias(name, bias, target_shape):
    """bias (added to attention scores) must be floating and broadcast to target_shape."""
    if bias is None:
        return
    check_float(name, bias)
    if broadcast_shape(tuple(bias.shape), tuple(target_shape)) != tuple(target_shape):
        raise ValueError(
            f"{name} of shape {tuple(bias.shape)} does not broadcast to (..., T, S) = {tuple(target_shape)}"
        )


def check_choice(name, value, choices):
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")


def is_int(value):
    """A whole number: Python's or NumPy's integers, not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(name, value, low=None, high=None):
    """value must be an integer (any numbers.Integral but bool) in [low, high]; returns it as a Python int."""
    if not is_int(value) or (low is not None and value < low) or (high is not None and value > high):
        where = (f" >= {low}" if high is None else f" in [{low}, {high}]") if low is not None else ""
        raise ValueError(f"{name} must be an integer{where}, got {value!r}")
    return int(value)


def check_positive_int(name, value):
    if not is_int(value) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_real(name, value, low=-math.inf, high=math.inf, low_open=False, high_open=False):
    """value must be a finite real number (not a bool) in the interval; returns it as a Python float."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        if high != math.inf:
            where = f" in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        else:
            where = f" {'>' if low_open else '>='} {low:g}" if low != -math.inf else ""
        raise ValueError(f"{name} must be a finite number{where}, got {value!r}")
    return float(value)


def check_bool(name, value):
    """value must be True or False (a string such as 'False' is truthy: refuse it)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value
