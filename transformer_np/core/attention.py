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
    mask: bool, broadcastable to (..., T, S), True where query t may attend to key s.
    bias: float, broadcastable to (..., T, S), added to the scores before the softmax (an extension:
          torch's float masks, ALiBi; -inf entries act as masked).
    Returns (out (..., T, Dv), weights (..., T, S)).

    Deviation from torch: a query whose keys are all masked gets weights 0 and output 0 (torch: NaN).
    """
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
    lead = broadcast_shape(tuple(q.shape[:-2]), tuple(k.shape[:-2]))
    if lead is None or broadcast_shape(lead, tuple(v.shape[:-2])) is None:
        raise ValueError(f"the leading (batch, head) dims of q {tuple(q.shape)}, k {tuple(k.shape)} and "
                         f"v {tuple(v.shape)} do not broadcast (one key/value head per query head)")
    scores = (q * (1.0 / math.sqrt(q.shape[-1]))) @ k.mT  # (..., T, S); scaling q is cheaper than scores
    check_mask("mask", mask, scores.shape)
    check_bias("bias", bias, scores.shape)
    if bias is not None:
        scores += bias  # in place: scores is our own fresh array
    weights = softmax(scores, axis=-1, mask=mask)  # (..., T, S)
    return weights @ v, weights  # (..., T, Dv), (..., T, S)


def scaled_dot_product_attention_backward(dout, q, k, v, weights, dweights=None):
    r"""Gradients of out = softmax(q k^T / \sqrt{D} + bias, mask) v, from the forward's inputs and weights.

    forward: out = W v             -> dv = W^T dout,  dW = dout v^T (+ dweights)
    forward: W = softmax(S, mask)  -> dS = W (dW - rowsum(dW W))   (0 where masked)
    forward: S = (q / \sqrt{D}) k^T -> dq = dS k / \sqrt{D},  dk = dS^T q / \sqrt{D}
    Returns (dq, dk, dv)."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    dv = weights.mT @ dout  # (..., S, Dv)
    dw = dout @ v.mT  # (..., T, S)
    if dweights is not None:
        dw = dw + dweights
    ds = softmax_backward(dw, weights)  # (..., T, S)
    return (ds @ k) * scale, (ds.mT @ q) * scale, dv


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
    x_q, x_k, x_v, w_q, b_q, w_k, b_k, w_v, b_v, w_o, b_o, *, n_heads, mask=None, bias=None, kv=None
):
    r"""MultiHead(Q, K, V) = Concat(head_1, …, head_H) W^O,
    head_i = Attention(Q W^Q_i, K W^K_i, V W^V_i)        (paper §3.2.2)

    x_q: (B, T, C) queries; x_k: (B, S, Ck) keys; x_v: (B, S, Cv) values.  Self-attention passes the
    same x three times; cross-attention passes the encoder memory as x_k and x_v.
    w_q: (C, C)  w_k: (Ck, C)  w_v: (Cv, C)  w_o: (C, C); biases (C,) or None.
    mask/bias: broadcastable to (B, H, T, S).
    kv: optional precomputed (k, v), each (B, H, S, D) — the slot a KV cache fills; x_k, x_v are unused.
    Returns (out (B, T, C), weights (B, H, T, S) per head).
    """
    out, weights, _ = multi_head_attention_forward(x_q, x_k, x_v, w_q, b_q, w_k, b_k, w_v, b_v, w_o, b_o,
                                                   n_heads=n_heads, mask=mask, bias=bias, kv=kv)
    return out, weights


def multi_head_attention_forward(
    x_q, x_k, x_v, w_q, b_q, w_k, b_k, w_v, b_v, w_o, b_o, *, n_heads, mask=None, bias=None, kv=None
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
        kv = project_kv(x_k, x_v, w_k, b_k, w_v, b_v, n_heads=n_heads)
    k, v = kv  # (B, H, S, D) each
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
