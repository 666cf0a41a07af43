r"""Token embeddings and position encodings (paper §3.4 and §3.5)."""

from __future__ import annotations

import math

import numpy as np

from .backend import array_namespace, take_rows
from .checks import check_ids, check_positive_int


def token_embedding(ids, table, scale=True):
    r"""Emb(ids) = E[ids] \cdot \sqrt{d_{model}}   (paper §3.4; scale=False gives plain E[ids])

    ids: int (B, T) (any shape)  table E: (V, C).  Returns (B, T, C).
    Negative or too-large ids raise ValueError (NumPy indexing would silently wrap them).
    """
    check_ids("ids", ids, table.shape[0])
    x = take_rows(table, ids)  # (B, T, C)
    return x * math.sqrt(table.shape[1]) if scale else x


def sinusoidal_positional_encoding(max_len, d_model, *, dtype=None, like=None):
    r"""PE(pos, 2i) = \sin(pos / 10000^{2i/d}),  PE(pos, 2i+1) = \cos(pos / 10000^{2i/d})   (paper §3.5)

    Returns (max_len, d_model), float32 NumPy by default; ``like`` = an array whose library, device and
    dtype the table should take.  Computed in float64 and then cast, so that every row is exact to the
    output dtype even at large positions.  An odd d_model keeps the last (sin) column.
    """
    check_positive_int("max_len", max_len)
    check_positive_int("d_model", d_model)
    pos = np.arange(max_len, dtype=np.float64)[:, None]  # (max_len, 1)
    inv_freq = np.exp(-math.log(10000.0) * np.arange(0, d_model, 2) / d_model)  # (ceil(d/2),)
    angle = pos * inv_freq  # (max_len, ceil(d/2))
    pe = np.empty((max_len, d_model), dtype=np.float64)
    pe[:, 0::2] = np.sin(angle)
    pe[:, 1::2] = np.cos(angle[:, : d_model // 2])
    if like is None:
        return pe.astype(dtype or np.float32)
    return _asarray_like(pe, like, dtype)


def _asarray_like(a, like, dtype=None):
    """The NumPy array a in the library, device and (unless dtype given) dtype of ``like``."""
    xp = array_namespace(like)
    from .backend import device

    return xp.asarray(a, dtype=dtype or like.dtype, device=device(like))


def positional_slice(table, length, offset=0, name="sequence length"):
    r"""Rows offset … offset+length-1 of a (max_len, C) position table, for a sequence of that length.

    Raises ValueError when the sequence does not fit the table.
    """
    if offset < 0 or offset + length > table.shape[0]:
        raise ValueError(
            f"{name} {offset + length} exceeds the positional table's max_len {table.shape[0]}"
        )
    return table[offset : offset + length, ...]  # (T, C)


def learned_positional_embedding(table, length, offset=0):
    r"""P[pos] for pos = offset … offset+length-1: a trained (max_len, C) table, as in BERT and GPT-2."""
    return positional_slice(table, length, offset)
