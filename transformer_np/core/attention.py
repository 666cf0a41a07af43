r"""Scaled dot-product attention and multi-head attention (paper §3.2).

Heads are an array axis: (B, T, C) -> (B, H, T, D) with C = H·D, never a Python loop.  Each forward has
its backward beside it.
Cross-attention scores are (B, H, T, S): T queries from the decoder, S keys from the encoder memory.
"""

from __future__ import annotations

import math

from .backend import array_namespace
from .checks import broadcast_shape, check_bias, check_float, check_mask, check_positive_int
from .nn import linear, linear_backward, softmax, softmax_backward


def scaled_dot_product_attention(q, k, v, mask=None, bias=None):
    r"""Attention(Q, K, V) = softmax(Q K^T / \sqrt{d_k}) V        (paper, eq. 1)

    q: (..., T, D)  k: (..., S, D)  v: (..., S, Dv)
    Grouped-query attention (Ainslie et al. 2023): with q (..., H, T, D) and k, v (..., H_kv, S, ·), H a
    multiple of H_kv, query head h attends with key/value head h // (H / H_kv) — the K/V heads are shared, not
    copied (torch: ``scaled_dot_product_attention(..., enable_gqa=True)``).
    mask: bool, broadcastable to (..., T, S), True where query t may attend to key s.
    bias: float, broadcastable to (..., T, S), added to the scores before the softmax (an extension:
          torch's float masks, ALiBi; -inf entries act as masked).
    Returns (out (..., T, Dv), weights (..., T, S)).

    Deviation from torch: a query whose keys are all masked gets weights 0 and output 0 (torch: NaN).
    """
    G = check_qkv(q, k, v)  # G query heads share each key/value head (1: multi-head attention)
    q = q * (1.0 / math.sqrt(q.shape[-1]))  # Q / √d_k: scaling q is cheaper than scaling the scores
    scores = attention_scores(q, k, G)  # Q Kᵀ / √d_k   (..., T, S)
    check_mask("mask", mask, scores.shape)
    check_bias("bias", bias, scores.shape)
    if bias is not None:
        scores += bias  # in place: scores is our own fresh array
    weights = softmax(scores, axis=-1, mask=mask, overwrite_x=True)  # (..., T, S), in scores' memory: ours
    return weighted_values(weights, v, G), weights  # (..., T, Dv), (..., T, S)


def check_qkv(q, k, v):
    """Float q, k, v of at least 2 dims with q's and k's d_k equal, k's and v's length S equal, d_k, S ≥ 1, and
    leading dims that broadcast or group (kv_group); returns G."""
    for name, a in (("q", q), ("k", k), ("v", v)):
        check_float(name, a)
        if a.ndim < 2:
            raise ValueError(f"{name} must have at least 2 dims (..., len, dim), got shape {tuple(a.shape)}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k must share the last dim d_k, got q {tuple(q.shape)} and k {tuple(k.shape)}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"k and v must have the same length S, got k {tuple(k.shape)} and v {tuple(v.shape)}")
    if q.shape[-1] < 1 or k.shape[-2] < 1:
        raise ValueError(f"attention needs d_k >= 1 and at least one key (S >= 1), got q {tuple(q.shape)} "
                         f"and k {tuple(k.shape)}")
    return kv_group(q, k, v)


def attention_scores(q, k, G=1):
    r"""Q Kᵀ: q (..., T, D), k (..., S, D) -> (..., T, S).  Grouped-query heads (G = H / H_kv from kv_group),
    q (..., H, T, D) with k (..., H_kv, S, D): query heads h = j·G … j·G + G − 1 share key/value head j, and
    nothing is copied — one decode query (T = 1) as G matrix-vector products per K/V head (the fastest here),
    more queries as the group's G·T rows stacked into one product per K/V head (1.9 vs 3.6 ms at SmolLM2's
    prefill, against G products)."""
    if G == 1:
        return q @ k.mT
    xp = array_namespace(q, k)
    *lead, H, T, D = q.shape
    if T == 1:
        scores = xp.reshape(q, (*lead, H // G, G, T, D)) @ xp.expand_dims(k, axis=-3).mT  # (..., H_kv, G, 1, S)
    else:
        scores = xp.reshape(q, (*lead, H // G, G * T, D)) @ k.mT  # (..., H_kv, G·T, S)
    return xp.reshape(scores, (*lead, H, T, k.shape[-2]))


def weighted_values(weights, v, G=1):
    r"""A V: weights (..., T, S), v (..., S, Dv) -> (..., T, Dv); grouped-query heads (weights (..., H, T, S),
    v (..., H_kv, S, Dv)) as one product per K/V head over the group's G·T stacked rows, nothing copied."""
    if G == 1:
        return weights @ v
    xp = array_namespace(weights, v)
    *lead, H, T, S = weights.shape
    out = xp.reshape(weights, (*lead, H // G, G * T, S)) @ v  # (..., H_kv, G·T, Dv)
    return xp.reshape(out, (*lead, H, T, v.shape[-1]))


def additive_attention(q, k, v, w_q, w_k, v_a, mask=None):
    r"""score(q_t, k_s) = v_a^T \tanh(q_t W_q + k_s W_k),  out_t = \sum_s softmax_s(score)_{t,s} v_s
    (Bahdanau et al. 2015; the alternative the paper compares with in §3.2.1).

    q: (..., T, Dq)  k: (..., S, Dk)  v: (..., S, Dv)  w_q: (Dq, A)  w_k: (Dk, A)  v_a: (A,)
    mask as in scaled_dot_product_attention.  Returns (out (..., T, Dv), weights (..., T, S)).

    The score is a one-hidden-layer network of each (query, key) pair, so it builds a (..., T, S, A) array
    where dot-product attention needs one matmul: the paper's reason for preferring the dot product."""
    for name, a in (("q", q), ("k", k), ("v", v), ("w_q", w_q), ("w_k", w_k), ("v_a", v_a)):
        check_float(name, a)
    if w_q.shape[0] != q.shape[-1] or w_k.shape[0] != k.shape[-1] or not w_q.shape[1] == w_k.shape[1] == v_a.shape[0]:
        raise ValueError(f"w_q must be (Dq, A), w_k (Dk, A) and v_a (A,) with q (..., T, Dq), k (..., S, Dk); "
                         f"got q {tuple(q.shape)}, k {tuple(k.shape)}, w_q {tuple(w_q.shape)}, "
                         f"w_k {tuple(w_k.shape)}, v_a {tuple(v_a.shape)}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"k and v must have the same length S, got k {tuple(k.shape)} and v {tuple(v.shape)}")
    xp = array_namespace(q, k, v)
    hidden = xp.tanh(xp.expand_dims(q @ w_q, axis=-2) + xp.expand_dims(k @ w_k, axis=-3))  # (..., T, S, A)
    scores = hidden @ v_a  # (..., T, S)
    check_mask("mask", mask, scores.shape)
    weights = softmax(scores, axis=-1, mask=mask)
    return weights @ v, weights


def kv_group(q, k, v):
    """G = H / H_kv, the query heads sharing one key/value head (1: multi-head attention), after checking that
    the leading dims agree: q (..., H, T, D), k and v (..., H_kv, S, ·) with H a multiple of H_kv."""
    lead = broadcast_shape(tuple(q.shape[:-2]), tuple(k.shape[:-2]))
    if lead is not None and broadcast_shape(lead, tuple(v.shape[:-2])) is not None:
        return 1
    if (q.ndim >= 3 and k.ndim == q.ndim and v.ndim == q.ndim and k.shape[-3] == v.shape[-3]
            and k.shape[-3] and q.shape[-3] % k.shape[-3] == 0
            and broadcast_shape(tuple(q.shape[:-3]), tuple(k.shape[:-3])) == tuple(q.shape[:-3])
            and tuple(k.shape[:-3]) == tuple(v.shape[:-3])):
        return q.shape[-3] // k.shape[-3]
    raise ValueError(f"the leading (batch, head) dims of q {tuple(q.shape)}, k {tuple(k.shape)} and "
                     f"v {tuple(v.shape)} do not broadcast, and k/v's head count does not divide q's "
                     "(grouped-query attention: H = G · H_kv)")


def scaled_dot_product_attention_backward(dout, q, k, v, weights, dweights=None):
    r"""Gradients of out = softmax(q k^T / \sqrt{D} + bias, mask) v, from the forward's inputs and weights.

    forward: out = W v             -> dv = W^T dout,  dW = dout v^T (+ dweights)
    forward: W = softmax(S, mask)  -> dS = W (dW - rowsum(dW W))   (0 where masked)
    forward: S = (q / \sqrt{D}) k^T -> dq = dS k / \sqrt{D},  dk = dS^T q / \sqrt{D}
    Returns (dq, dk, dv)."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    G = kv_group(q, k, v)
    if G > 1:  # grouped-query: view the H query heads as (H_kv, G); a shared K/V head sums its G gradients
        xp = array_namespace(q)
        *lead, H, T, S = weights.shape

        def grouped(a):  # (..., H, T, X) -> (..., H_kv, G, T, X)
            return xp.reshape(a, (*lead, H // G, G, T, a.shape[-1]))

        k_, v_ = xp.expand_dims(k, axis=-3), xp.expand_dims(v, axis=-3)  # (..., H_kv, 1, S, ·)
        dv = xp.sum(grouped(weights).mT @ grouped(dout), axis=-3)  # (..., H_kv, S, Dv)
        dw = xp.reshape(grouped(dout) @ v_.mT, (*lead, H, T, S))
        ds = softmax_backward(dw if dweights is None else dw + dweights, weights)
        dq = xp.reshape(grouped(ds) @ k_, q.shape) * scale
        return dq, xp.sum(grouped(ds).mT @ grouped(q), axis=-3) * scale, dv
    dv = weights.mT @ dout  # (..., S, Dv)
    dw = dout @ v.mT  # (..., T, S)
    if dweights is not None:
        dw = dw + dweights
    ds = softmax_backward(dw, weights)  # (..., T, S)
    # an input that was broadcast (one K/V head for all heads: multi-query) sums its gradients over the copies
    return (unbroadcast((ds @ k) * scale, q.shape), unbroadcast((ds.mT @ q) * scale, k.shape),
            unbroadcast(dv, v.shape))


def unbroadcast(g, shape):
    """Sum g over the axes along which an array of ``shape`` was broadcast to g's shape."""
    if tuple(g.shape) == tuple(shape):
        return g
    xp = array_namespace(g)
    extra = g.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(extra + i for i, n in enumerate(shape) if n == 1 and g.shape[extra + i] != 1)
    return xp.reshape(xp.sum(g, axis=axes, keepdims=True), shape) if axes else g


def split_heads(x, n_heads):
    r"""(B, T, C) -> (B, H, T, D), D = C / H: head h takes columns h·D … (h+1)·D - 1."""
    xp = array_namespace(x)
    B, T, C = x.shape
    if C % n_heads:
        raise ValueError(f"d_model={C} is not divisible by n_heads={n_heads}")
    return xp.permute_dims(xp.reshape(x, (B, T, n_heads, C // n_heads)), (0, 2, 1, 3))


def merge_heads(x):
    r"""Concat(head_1, …, head_H): (B, H, T, D) -> (B, T, H·D)."""
    xp = array_namespace(x)
    B, H, T, D = x.shape
    return xp.reshape(xp.permute_dims(x, (0, 2, 1, 3)), (B, T, H * D))


def multi_head_attention(
    x_q, x_k, x_v, w_q, b_q, w_k, b_k, w_v, b_v, w_o, b_o, *, n_heads, mask=None, bias=None, kv=None,
    n_kv_heads=None
):
    r"""MultiHead(Q, K, V) = Concat(head_1, …, head_H) W^O,
    head_i = Attention(Q W^Q_i, K W^K_i, V W^V_i)        (paper §3.2.2)

    x_q: (B, T, C) queries; x_k: (B, S, Ck) keys; x_v: (B, S, Cv) values.  Self-attention passes the
    same x three times; cross-attention passes the encoder memory as x_k and x_v.
    w_q: (C, C)  w_k: (Ck, C)  w_v: (Cv, C)  w_o: (C, C); biases (C,) or None.
    mask/bias: broadcastable to (B, H, T, S).
    kv: optional precomputed (k, v), each (B, H_kv, S, D) — the slot a KV cache fills; x_k, x_v are unused.
    n_kv_heads: H_kv key/value heads (grouped-query attention; default H): w_k, w_v are then (C·, H_kv·D).
    Returns (out (B, T, C), weights (B, H, T, S) per head).
    """
    out, weights, _ = multi_head_attention_forward(x_q, x_k, x_v, w_q, b_q, w_k, b_k, w_v, b_v, w_o, b_o,
                                                   n_heads=n_heads, mask=mask, bias=bias, kv=kv,
                                                   n_kv_heads=n_kv_heads)
    return out, weights


def multi_head_attention_forward(
    x_q, x_k, x_v, w_q, b_q, w_k, b_k, w_v, b_v, w_o, b_o, *, n_heads, mask=None, bias=None, kv=None,
    n_kv_heads=None
):
    """multi_head_attention, also returning the cache of its backward (references, no extra work)."""
    check_positive_int("n_heads", n_heads)
    check_float("x_q", x_q)
    if x_q.ndim != 3:
        raise ValueError(f"x_q must be (B, T, C), got shape {tuple(x_q.shape)}")
    if w_q.shape[1] % n_heads:
        raise ValueError(f"d_model={w_q.shape[1]} is not divisible by n_heads={n_heads}")
    q = split_heads(linear(x_q, w_q, b_q), n_heads)  # (B, H, T, D)
    if kv is None:
        kv = project_kv(x_k, x_v, w_k, b_k, w_v, b_v, n_heads=n_heads if n_kv_heads is None else n_kv_heads)
    k, v = kv  # (B, H_kv, S, D) each
    if k.shape[0] != q.shape[0]:
        raise ValueError(f"queries and keys must share the batch size B, got {q.shape[0]} and {k.shape[0]}")
    a, weights = scaled_dot_product_attention(q, k, v, mask=mask, bias=bias)  # (B, H, T, D), (B, H, T, S)
    merged = merge_heads(a)  # (B, T, C)
    return linear(merged, w_o, b_o), weights, (x_q, x_k, x_v, q, k, v, weights, merged)


def multi_head_attention_backward(dout, cache, w_q, b_q, w_k, b_k, w_v, b_v, w_o, b_o, *, n_heads,
                                  dweights=None):
    """The forward's lines in reverse.  Returns (dx_q, dx_k, dx_v, grads of the 8 parameters).
    For self-attention the caller adds dx_q + dx_k + dx_v: the same x was used three times."""
    x_q, x_k, x_v, q, k, v, weights, merged = cache
    dmerged, dw_o, db_o = linear_backward(dout, merged, w_o, b_o is not None)  # out = linear(merged, w_o, b_o)
    da = split_heads(dmerged, n_heads)  # merged = merge_heads(a)
    dq, dk, dv = scaled_dot_product_attention_backward(da, q, k, v, weights, dweights)
    dx_q, dw_q, db_q = linear_backward(merge_heads(dq), x_q, w_q, b_q is not None)  # q = split(linear(x_q))
    dx_k, dw_k, db_k = linear_backward(merge_heads(dk), x_k, w_k, b_k is not None)
    dx_v, dw_v, db_v = linear_backward(merge_heads(dv), x_v, w_v, b_v is not None)
    grads = {"w_q": dw_q, "b_q": db_q, "w_k": dw_k, "b_k": db_k, "w_v": dw_v, "b_v": db_v,
             "w_o": dw_o, "b_o": db_o}
    return dx_q, dx_k, dx_v, grads


def project_kv(x_k, x_v, w_k, b_k, w_v, b_v, *, n_heads):
    r"""K_i = X_k W^K_i and V_i = X_v W^V_i for every head at once: (B, S, C·) -> two (B, H, S, D)."""
    for name, x in (("x_k", x_k), ("x_v", x_v)):
        check_float(name, x)
        if x.ndim != 3:
            raise ValueError(f"{name} must be (B, S, C), got shape {tuple(x.shape)}")
    if x_k.shape[:2] != x_v.shape[:2]:
        raise ValueError(f"x_k and x_v must share (B, S), got {tuple(x_k.shape)} and {tuple(x_v.shape)}")
    k = split_heads(linear(x_k, w_k, b_k), n_heads)  # (B, H, S, D)
    v = split_heads(linear(x_v, w_v, b_v), n_heads)  # (B, H, S, D)
    return k, v
