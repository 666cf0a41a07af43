r"""Token embeddings and position encodings (paper §3.4 and §3.5)."""

from __future__ import annotations

import math

import numpy as np

from .backend import array_namespace, device, scatter_add_rows, take_rows
from .checks import check_ids, check_positive_int
from .fast import rope_pairs
from .weights import StoredWeight


def token_embedding(ids, table, scale=True):
    r"""Emb(ids) = E[ids] \cdot \sqrt{d_{model}}   (paper §3.4; scale=False gives plain E[ids])

    ids: int (B, T) (any shape)  table E: (V, C), an array or a stored weight (core.weights: it looks up and
    dequantizes only the rows asked for).  Returns (B, T, C).
    Negative or too-large ids raise ValueError (NumPy indexing would silently wrap them).
    """
    check_ids("ids", ids, table.shape[0])
    x = table.take_rows(ids) if isinstance(table, StoredWeight) else take_rows(table, ids)  # (B, T, C)
    return x * math.sqrt(table.shape[1]) if scale else x


def token_embedding_backward(dx, ids, vocab_size, scale=True):
    r"""forward: x = E[ids] \sqrt{C}, so dE[v] = \sqrt{C} \sum_{positions with id v} dx  (repeats add up).
    dx: (B, T, C) -> dE: (V, C)."""
    xp = array_namespace(dx)
    C = dx.shape[-1]
    rows = scatter_add_rows(vocab_size, xp.reshape(ids, (-1,)), xp.reshape(dx, (-1, C)))
    return rows * math.sqrt(C) if scale else rows


def sinusoidal_positional_encoding(max_len, d_model, *, dtype=None, like=None):
    r"""PE(pos, 2i) = \sin(pos / 10000^{2i/d}),  PE(pos, 2i+1) = \cos(pos / 10000^{2i/d})   (paper §3.5)

    Returns the table (max_len, d_model), float32 NumPy by default; ``like`` = an array whose library,
    device and dtype the table should take.  Computed in float64 and then cast, so that every row is exact
    to the output dtype even at large positions.  An odd d_model keeps the last (sin) column.
    """
    check_positive_int("max_len", max_len)
    check_positive_int("d_model", d_model)
    if dtype is not None and not np.issubdtype(np.dtype(dtype), np.floating):
        raise TypeError(f"dtype must be a floating dtype (the table's values lie in [-1, 1]), got {dtype}")
    if like is None:
        return sinusoidal_positions(np.arange(max_len), d_model, dtype=dtype or np.float32)
    xp = array_namespace(like)
    return sinusoidal_positions(xp.arange(max_len, device=device(like)), d_model, dtype=dtype or like.dtype)


def sinusoidal_positions(positions, d_model, *, dtype=None):
    r"""The rows PE[positions] of the sin-cos table, computed directly for integer positions of any shape:
    (*positions.shape, d_model), in the positions' library; float32 unless dtype is given.  (Decoding step
    t needs one row, not a table of t rows.)"""
    xp = array_namespace(positions)
    inv_freq = np.exp(-math.log(10000.0) * np.arange(0, d_model, 2) / d_model)  # (ceil(d/2),) = 10000^(-2i/d)
    angle = xp.astype(positions, xp.float64)[..., None] * xp.asarray(inv_freq, device=device(positions))
    pe = xp.stack([xp.sin(angle), xp.cos(angle)], axis=-1)  # (..., ceil(d/2), 2): sin, cos interleaved
    pe = xp.reshape(pe, (*positions.shape, 2 * inv_freq.shape[0]))[..., :d_model]  # (..., d_model)
    return xp.astype(pe, dtype if dtype is not None else xp.float32)


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


ROPE_LAYOUTS = ("pairs", "half")


def rope_angles(positions, d_head, base=10000.0):
    r"""θ_{p,i} = p · base^{-2i/D} for i = 0 … D/2 - 1   (Su et al. 2021, RoFormer)

    positions: int (...) -> (cos θ, sin θ), each (..., D/2) float64, in the positions' library."""
    check_positive_int("d_head", d_head)
    if d_head % 2:
        raise ValueError(f"rotary embedding needs an even head size, got d_head={d_head}")
    xp = array_namespace(positions)
    inv_freq = base ** (-np.arange(0, d_head, 2) / d_head)  # (D/2,)
    theta = xp.astype(positions, xp.float64)[..., None] * xp.asarray(inv_freq, device=device(positions))
    return xp.cos(theta), xp.sin(theta)


def rope(x, positions, base=10000.0, layout="pairs", inverse=False, angles=None):
    r"""RoPE: rotate every pair of features of the vector at position p by the angle θ_{p,i}:

        (x_a, x_b) ↦ (x_a cos θ_{p,i} - x_b sin θ_{p,i},  x_a sin θ_{p,i} + x_b cos θ_{p,i})

    so that q_m · k_n depends on m and n only through m - n.  Which features pair up is a convention:
    ``"pairs"`` rotates (x_{2i}, x_{2i+1}) (the paper, GPT-J, llama.cpp and the weights of a GGUF file);
    ``"half"`` rotates (x_i, x_{i+D/2}) (GPT-NeoX and Hugging Face's Llama, whose q/k weights are permuted to
    match).  ``inverse=True`` rotates by -θ: the backward, since a rotation's transpose is its inverse.

    x: (..., T, D), e.g. (B, H, T, D); positions: int (T,), or (B, T) for x (B, H, T, D).  Returns x's shape.
    angles: ``rope_angles(positions, D, base)`` when the caller has them already (a model computes them once
    for all its layers' q and k).  For NumPy float32 in the pairs layout the rotation is written straight into
    one output array (core.fast.rope_pairs): the same products and sums, the same bits."""
    if layout not in ROPE_LAYOUTS:
        raise ValueError(f"layout must be one of {ROPE_LAYOUTS}, got {layout!r}")
    xp = array_namespace(x)
    D = x.shape[-1]
    cos, sin = rope_angles(positions, D, base) if angles is None else angles  # (..., T, D/2)
    if x.ndim == 4 and positions.ndim == 2:
        cos, sin = cos[:, None], sin[:, None]  # (B, 1, T, D/2): every head of a row at its positions
    cos, sin = xp.astype(cos, x.dtype), xp.astype(sin, x.dtype)
    if inverse:
        sin = -sin
    if layout == "pairs" and isinstance(x, np.ndarray) and x.dtype == np.float32:
        return rope_pairs(x, cos, sin)  # the lines below, without the stack's copy (core.fast)
    if layout == "pairs":
        a, b = x[..., 0::2], x[..., 1::2]  # (..., T, D/2) each
        return xp.reshape(xp.stack([a * cos - b * sin, a * sin + b * cos], axis=-1), x.shape)
    a, b = x[..., : D // 2], x[..., D // 2:]
    return xp.concat([a * cos - b * sin, a * sin + b * cos], axis=-1)


def rope_backward(dy, positions, base=10000.0, layout="pairs"):
    """forward: y = R_θ x (a rotation), so dx = R_θᵀ dy = R_{-θ} dy."""
    return rope(dy, positions, base, layout, inverse=True)
