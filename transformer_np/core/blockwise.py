r"""Blockwise attention with the online softmax — FlashAttention's idea in NumPy: softmax(QKᵀ/√D)V computed
tile by tile, so the T×S matrix of scores is never held whole; memory grows with T·b, not T².

For each tile of b_q queries, the key/value tiles of b_k keys are visited in order, keeping per query row a
running maximum m, a running normaliser l and an unnormalised output O:

    S  = Q_tile K_tileᵀ / √D                    (masked entries -inf)
    m' = max(m, rowmax S)
    l' = e^{m - m'} l + Σ_s e^{S - m'}
    O' = e^{m - m'} O + e^{S - m'} V_tile
    out = O / l                                 after the last tile

Rescaling by e^{m - m'} when the maximum grows makes the result exactly the softmax's, up to rounding.  Tiles
that the mask hides entirely are skipped (with a causal mask, almost half of them).  The backward recomputes
each tile's probabilities from the saved log-normaliser L = m + log l instead of storing them.

:func:`attention` is what a model's forward calls: the plain product for short inputs (or when the weights are
wanted), tiles once the scores would pass :data:`AUTO_SCORES_BYTES`.  Measured on SmolLM2's heads (9 query, 3
K/V, D = 64, causal, one thread): at T = S = 4,096 the plain path peaks at 623 MB of scores and takes 1.47 s a
layer, 256 × 256 tiles 30 MB and 1.01 s — the masked half of the tiles is skipped; at T = 512 the tiles cost
1.2–2× the plain time (Python's loop over small products), so short inputs stay plain.
"""

from __future__ import annotations

import math

from .attention import kv_group, scaled_dot_product_attention, unbroadcast
from .backend import array_namespace
from .checks import broadcast_shape, check_choice, check_float, check_mask, check_positive_int

ATTENTION_PATHS = ("auto", "plain", "blockwise")
AUTO_SCORES_BYTES = 32 * 2**20  # "auto" tiles once the (..., T, S) scores would take more than this
BLOCK = 256  # the tile a model's forward uses (block_q = block_k): 256 measured fastest at T = 1,024-4,096


def _tile(a, axis_from_end, start, stop):
    """a[..., start:stop, :] (axis -2) or a[..., start:stop] (axis -1), None kept as None."""
    if a is None:
        return None
    if axis_from_end == 2:
        return a[..., start:stop, :] if a.shape[-2] != 1 else a
    return a[..., start:stop] if a.shape[-1] != 1 else a


def _grouped(q, k, v):
    """Views for grouped-query heads: q (..., H, T, D) -> (..., H_kv, G, T, D), k/v -> (..., H_kv, 1, S, ·)."""
    xp = array_namespace(q)
    G = kv_group(q, k, v)
    if G == 1:
        return q, k, v, G
    *lead, H, T, D = q.shape
    return (xp.reshape(q, (*lead, H // G, G, T, D)), xp.expand_dims(k, axis=-3), xp.expand_dims(v, axis=-3), G)


def _mask_view(mask, G, q_shape):
    """The mask broadcast to the grouped score layout (..., H_kv, G, T, S), or None."""
    if mask is None or G == 1:
        return mask
    xp = array_namespace(mask)
    full = (*q_shape[:-2], mask.shape[-2], mask.shape[-1])  # (..., H, T or 1, S or 1)
    m = xp.broadcast_to(mask, broadcast_shape(tuple(mask.shape), full))
    *lead, H, T, S = m.shape
    return xp.reshape(m, (*lead, H // G, G, T, S))


def attention(q, k, v, mask=None, path="auto"):
    r"""softmax(Q Kᵀ / √D, mask) V by the plain product or by tiles: path "plain" (returns the weights),
    "blockwise" (weights None: never formed) or "auto" — blockwise once the scores (..., T, S) would take more
    than AUTO_SCORES_BYTES.  Shapes as :func:`~transformer_np.core.attention.scaled_dot_product_attention`.
    Returns (out (..., T, Dv), weights (..., T, S) or None)."""
    check_choice("path", path, ATTENTION_PATHS)
    if path == "auto":
        scores_bytes = math.prod(q.shape[:-1]) * k.shape[-2] * q.dtype.itemsize  # (..., H, T) · S
        path = "blockwise" if scores_bytes > AUTO_SCORES_BYTES else "plain"
    if path == "plain":
        return scaled_dot_product_attention(q, k, v, mask=mask)
    return blockwise_attention(q, k, v, mask, BLOCK, BLOCK), None


def blockwise_attention(q, k, v, mask=None, block_q=128, block_k=128, trace=None):
    r"""softmax(Q Kᵀ / √D, mask) V, one (block_q × block_k) tile of scores at a time (the online softmax).

    q: (..., T, D)  k: (..., S, D)  v: (..., S, Dv); grouped-query heads as in
    :func:`~transformer_np.core.attention.scaled_dot_product_attention`.  mask: bool, broadcastable to
    (..., T, S), True where query t may attend to key s; a query with every key masked gets 0.
    trace: a list to which each tile visited appends (first query, keys seen, m, l) — the running maximum
    m (..., bq, 1) and normaliser l after it (what chapter 10's online-softmax picture draws).
    Returns out (..., T, Dv) — not the weights, which are never formed whole."""
    return blockwise_attention_forward(q, k, v, mask, block_q, block_k, trace)[0]


def blockwise_attention_forward(q, k, v, mask=None, block_q=128, block_k=128, trace=None):
    """blockwise_attention, also returning its backward's cache (q, k, v, mask, out, L = m + log l)."""
    for name, a in (("q", q), ("k", k), ("v", v)):
        check_float(name, a)
    check_positive_int("block_q", block_q)
    check_positive_int("block_k", block_k)
    xp = array_namespace(q, k, v)
    T, S = q.shape[-2], k.shape[-2]
    check_mask("mask", mask, (*q.shape[:-1], S))
    qg, kg, vg, G = _grouped(q, k, v)
    mg = _mask_view(mask, G, q.shape)
    scale = 1.0 / math.sqrt(q.shape[-1])
    outs, lses = [], []
    for t0 in range(0, T, block_q):
        qt = qg[..., t0:t0 + block_q, :] * scale  # (..., bq, D)
        mq = _tile(mg, 2, t0, t0 + block_q)
        tiles = ((min(s0 + block_k, S), kg[..., s0:s0 + block_k, :], vg[..., s0:s0 + block_k, :],
                  _tile(mq, 1, s0, s0 + block_k)) for s0 in range(0, S, block_k))
        o, lse = online_softmax(qt, tiles, vg.shape[-1], trace, t0)
        outs.append(o)
        lses.append(lse)
    out = xp.concat(outs, axis=-2)  # grouped layout (..., H_kv, G, T, Dv) when G > 1
    lse = xp.concat(lses, axis=-2)
    if G > 1:
        out = xp.reshape(out, (*q.shape[:-1], v.shape[-1]))
    return out, (q, k, v, mask, out, lse, block_q, block_k)


def online_softmax(qt, tiles, dv, trace=None, t0=0):
    r"""The online softmax over key tiles for queries qt (..., bq, D), already scaled by 1/√D: ``tiles`` yields
    (end position, k tile (..., s, D), v tile (..., s, Dv), mask tile or None) in key order; a tile the mask hides
    entirely is skipped.  Returns (out (..., bq, Dv), L = m + log l (..., bq, 1)); a query with no visible key
    gets out 0 and L = inf, not NaN.  ``trace`` as in :func:`blockwise_attention` (t0: the queries' first row)."""
    xp = array_namespace(qt)
    m = ell = o = None
    for end, kt, vt, mt in tiles:
        if mt is not None and not bool(xp.any(mt)):
            continue  # a tile the mask hides entirely: nothing to add
        scores = qt @ kt.mT  # (..., bq, bk)
        if mt is not None:
            scores = xp.where(mt, scores, -xp.inf)
        tile_max = xp.max(scores, axis=-1, keepdims=True)
        m_new = tile_max if m is None else xp.maximum(m, tile_max)
        shift = xp.where(m_new == -xp.inf, xp.zeros_like(m_new), m_new)  # rows still without a visible key
        p = xp.exp(scores - shift)  # (..., bq, bk)
        pv = p @ vt
        if m is None:
            ell, o = xp.sum(p, axis=-1, keepdims=True), pv
        else:
            alpha = xp.exp(m - shift)  # e^{m - m'}: rescales what the earlier tiles added
            ell = alpha * ell + xp.sum(p, axis=-1, keepdims=True)
            o = alpha * o + pv
        m = m_new
        if trace is not None:
            trace.append((t0, end, m, ell))
    if m is None:  # every key of these queries masked
        o = xp.zeros((*qt.shape[:-1], dv), dtype=qt.dtype)
        ell = xp.zeros((*qt.shape[:-1], 1), dtype=qt.dtype)
        m = xp.full((*qt.shape[:-1], 1), -xp.inf, dtype=qt.dtype)
    empty = ell == 0
    out = o / xp.where(empty, xp.ones_like(ell), ell)  # a row with no visible key: 0, not NaN
    return out, xp.where(empty, xp.full_like(ell, xp.inf), m + xp.log(xp.where(empty, xp.ones_like(ell), ell)))


def attention_over_tiles(q, tiles):
    r"""softmax(Q Kᵀ / √D, mask) V with the keys and values arriving tile by tile — from wherever they live (a
    paged cache's blocks, read in place: efficient.paged) — by the online softmax.  q (..., H, T, D); ``tiles``
    yields (end position, k (..., H_kv, s, D), v (..., H_kv, s, Dv), mask (..., 1 or H, T, s) or None), grouped-query
    heads as in :func:`~transformer_np.core.attention.scaled_dot_product_attention`.  Returns (..., H, T, Dv)."""
    xp = array_namespace(q)
    H, T, D = q.shape[-3:]
    scale = 1.0 / math.sqrt(D)

    def grouped(tile):
        end, kt, vt, mt = tile
        G = H // kt.shape[-3]
        if G == 1:
            return end, kt, vt, mt
        if mt is not None:
            mt = xp.expand_dims(mt, axis=-3) if mt.shape[-3] == 1 else _mask_view(mt, G, q.shape)
        return end, xp.expand_dims(kt, axis=-3), xp.expand_dims(vt, axis=-3), mt

    first = next(tiles := iter(tiles), None)
    if first is None:
        raise ValueError("attention_over_tiles needs at least one key tile")
    G = H // first[1].shape[-3]
    qg = xp.reshape(q, (*q.shape[:-3], H // G, G, T, D)) if G > 1 else q
    dv = first[2].shape[-1]

    def all_tiles():
        yield grouped(first)
        for tile in tiles:
            yield grouped(tile)

    out, _ = online_softmax(qg * scale, all_tiles(), dv)
    return xp.reshape(out, (*q.shape[:-1], dv)) if G > 1 else out


def blockwise_attention_backward(dout, cache):
    r"""Gradients of blockwise_attention by recomputation, tile by tile (FlashAttention's backward):

        P = e^{S - L}  (the tile's softmax, from the saved log-normaliser L)
        dV += Pᵀ dO,   dP = dO Vᵀ,   dS = P ⊙ (dP - δ) with δ = rowsum(dO ⊙ O),
        dQ += dS K / √D,   dK += dSᵀ Q / √D.
    Returns (dq, dk, dv)."""
    q, k, v, mask, out, lse, block_q, block_k = cache
    xp = array_namespace(dout)
    qg, kg, vg, G = _grouped(q, k, v)
    mg = _mask_view(mask, G, q.shape)
    if G > 1:
        dout = xp.reshape(dout, (*qg.shape[:-1], dout.shape[-1]))
        out = xp.reshape(out, (*qg.shape[:-1], out.shape[-1]))
    scale = 1.0 / math.sqrt(q.shape[-1])
    T, S = q.shape[-2], k.shape[-2]
    delta = xp.sum(dout * out, axis=-1, keepdims=True)  # (..., T, 1)
    dq = xp.zeros_like(qg)
    dk = xp.zeros((*qg.shape[:-2], S, k.shape[-1]), dtype=k.dtype)  # per query head; summed per group below
    dv = xp.zeros((*qg.shape[:-2], S, v.shape[-1]), dtype=v.dtype)
    for t0 in range(0, T, block_q):
        rows = slice(t0, t0 + block_q)
        qt, do, L, dl = qg[..., rows, :], dout[..., rows, :], lse[..., rows, :], delta[..., rows, :]
        mq = _tile(mg, 2, t0, t0 + block_q)
        for s0 in range(0, S, block_k):
            cols = slice(s0, s0 + block_k)
            mt = _tile(mq, 1, s0, s0 + block_k)
            if mt is not None and not bool(xp.any(mt)):
                continue
            scores = (qt * scale) @ kg[..., cols, :].mT
            if mt is not None:
                scores = xp.where(mt, scores, -xp.inf)
            p = xp.exp(scores - L)  # (..., bq, bk): the forward's weights of this tile
            dv[..., cols, :] += p.mT @ do
            ds = p * (do @ vg[..., cols, :].mT - dl)
            dq[..., rows, :] += (ds @ kg[..., cols, :]) * scale
            dk[..., cols, :] += (ds.mT @ qt) * scale
    if G > 1:  # a shared K/V head collects the gradients of its G query heads
        return (xp.reshape(dq, q.shape), xp.sum(dk, axis=-3), xp.sum(dv, axis=-3))
    return dq, unbroadcast(dk, k.shape), unbroadcast(dv, v.shape)  # one K/V head broadcast to all: summed
