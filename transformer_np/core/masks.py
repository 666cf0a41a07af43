r"""Boolean attention masks.  Convention everywhere in this package: **True where query t may attend
to key s**; masks broadcast to the scores' shape (B, H, T, S).  (torch's bool masks mean the opposite;
``interop`` converts at that boundary only.)"""

from __future__ import annotations

import numpy as np

from .backend import array_namespace, device
from .checks import check_positive_int


def causal_mask(T, S=None, *, like=None):
    r"""M[t, s] = (s \le t + (S - T)): query t sees keys up to its own position.  Shape (T, S).

    With S > T (T new queries after S - T cached keys) the queries are the last T positions.
    ``like`` picks the array library and device (NumPy by default).
    """
    check_positive_int("T", T)
    S = T if S is None else S
    check_positive_int("S", S)
    if S < T:
        raise ValueError(f"causal_mask needs S >= T (keys include the queries), got T={T}, S={S}")
    xp, dev = _xp_dev(like)
    t = xp.arange(T, device=dev)[:, None]  # (T, 1)
    s = xp.arange(S, device=dev)[None, :]  # (1, S)
    return s <= t + (S - T)  # (T, S)


def sliding_window_mask(T, S=None, window=None, *, like=None):
    r"""M[t, s] = (t' - W < s \le t'), t' = t + (S - T): causal, and only the last W keys up to the query's own
    position (a band of width W: Mistral's and Gemma's local layers).  Shape (T, S).  window None: causal_mask."""
    M = causal_mask(T, S, like=like)
    if window is None:
        return M
    check_positive_int("window", window)
    S = T if S is None else S
    xp, dev = _xp_dev(like)
    t = xp.arange(T, device=dev)[:, None] + (S - T)  # each query's position
    s = xp.arange(S, device=dev)[None, :]
    return M & (s > t - window)


def padding_mask(lengths=None, *, ids=None, pad_id=None, max_len=None):
    r"""Key-padding mask of shape (B, 1, 1, S): True at real tokens, False at padding.

    Give either ``lengths`` (B,) with ``max_len`` = S, or token ``ids`` (B, S) with their ``pad_id``.
    The two singleton axes let it broadcast over heads and queries.
    """
    if (lengths is None) == (ids is None):
        raise ValueError("padding_mask needs exactly one of lengths= or ids=")
    name, given = ("ids", ids) if ids is not None else ("lengths", lengths)
    if not (hasattr(given, "shape") and hasattr(given, "dtype")):
        raise TypeError(f"{name} must be an array, got {type(given).__name__}")
    if ids is not None:
        if pad_id is None:
            raise ValueError("padding_mask(ids=...) needs pad_id")
        if ids.ndim != 2:
            raise ValueError(f"ids must be (B, S), got shape {tuple(ids.shape)}")
        keep = ids != pad_id  # (B, S)
    else:
        xp = array_namespace(lengths)
        if not xp.isdtype(lengths.dtype, "integral") or lengths.ndim != 1 or lengths.shape[0] < 1:
            raise TypeError(f"lengths must be a non-empty 1-D integer array (B,), got dtype {lengths.dtype}, "
                            f"shape {tuple(lengths.shape)}")
        S = int(xp.max(lengths)) if max_len is None else max_len
        lo, hi = int(xp.min(lengths)), int(xp.max(lengths))
        if lo < 0 or hi > S:
            raise ValueError(f"lengths must lie in [0, max_len={S}], got values in [{lo}, {hi}]")
        keep = xp.arange(S, device=device(lengths))[None, :] < lengths[:, None]  # (B, S)
    return keep[:, None, None, :]  # (B, 1, 1, S)


def padding_keys(ids, pad_id):
    r"""The key mask (B, 1, 1, S) of the tokens of ``ids`` (B, S) that are not ``pad_id``, or None when the
    model has no padding token (pad_id None): every key is then visible."""
    return None if pad_id is None else padding_mask(ids=ids, pad_id=pad_id)


def combine_masks(*masks):
    r"""M = M_1 \wedge M_2 \wedge \dots: a key is visible only where every mask allows it (None = no mask)."""
    out = None
    for m in masks:
        if m is not None:
            out = m if out is None else out & m
    return out


def last_keys(mask, S):
    r"""The mask's last S key columns, M[..., -S:]: the mask of a cache that returns only the latest S positions
    (a sliding window's — decoding.cache.WindowCache); every earlier key must be masked already."""
    if mask is None or mask.shape[-1] == S:
        return mask
    if mask.shape[-1] < S:
        raise ValueError(f"the mask covers {mask.shape[-1]} keys, fewer than the {S} attended")
    return mask[..., -S:]


def _xp_dev(like):
    """(namespace, device) of ``like``, or NumPy's when like is None."""
    return (array_namespace(np.empty(0)), None) if like is None else (array_namespace(like), device(like))
