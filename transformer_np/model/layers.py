r"""The encoder and decoder layers (paper §3.1), each with its backward beside its forward.

A layer is a chain of sublayers, each ``x -> AddNorm(x, f(x))``.  Post-LN (the paper) and pre-LN differ in
one place only, the :func:`sublayer_forward` / :func:`sublayer_backward` pair; the layers read the same either
way.  Inference calls the forwards, so every layer is written once.  Layers take the
:class:`~transformer_np.model.config.TransformerConfig` for their options.
"""

from __future__ import annotations

from ..core.attention import multi_head_attention_backward, multi_head_attention_forward, project_kv
from ..core.nn import (
    dropout_backward,
    dropout_forward,
    feed_forward_backward,
    feed_forward_forward,
    layer_norm_backward,
    layer_norm_forward,
    residual,
)


# --- one sublayer ----------------------------------------------------------------------------------
def sublayer_forward(x, f, norm, cfg, rng=None):
    r"""y = LN(x + Dropout(f(x)))   (post-LN, the paper's "Add & Norm", §5.4)
    or y = x + Dropout(f(LN(x)))   (pre-LN, cfg.norm_first).

    f(h) -> (f(h), aux, f's backward cache); aux (attention weights, or None) is passed through.
    rng (a np.random.Generator) turns on dropout of rate cfg.dropout (training).
    Returns (y, aux, cache)."""
    h, ln = layer_norm_forward(x, **norm, eps=cfg.layer_norm_eps) if cfg.norm_first else (x, None)
    fx, aux, f_cache = f(h)
    fx, drop = dropout_forward(fx, cfg.dropout, rng)
    y = residual(x, fx)
    if not cfg.norm_first:
        y, ln = layer_norm_forward(y, **norm, eps=cfg.layer_norm_eps)
    return y, aux, (ln, drop, f_cache)


def sublayer_backward(dy, cache, f_backward, cfg):
    """The forward's lines in reverse.  f_backward(d f(h), f's cache) -> (dh, f's gradients).
    Returns (dx, f's gradients, {"gamma", "beta"} of the norm)."""
    ln, drop, f_cache = cache
    if not cfg.norm_first:  # forward: y = LN(x + f)
        dy, dgamma, dbeta = layer_norm_backward(dy, ln)
    dh, f_grads = f_backward(dropout_backward(dy, drop), f_cache)
    if cfg.norm_first:  # forward: h = LN(x)
        dh, dgamma, dbeta = layer_norm_backward(dh, ln)
    dx = dy + dh  # x feeds the residual and f
    return dx, f_grads, {"gamma": dgamma, "beta": dbeta}


# --- the three kinds of f --------------------------------------------------------------------------
def self_attention(h, p, cfg, mask=None, bias=None, cache=None):
    """Multi-head self-attention of h (B, T, C).  With a LayerCache (inference), the new keys and values are
    appended to the cached ones and the T queries attend to all S_past + T of them.
    Returns (out, weights, backward cache)."""
    if cache is None:
        return multi_head_attention_forward(h, h, h, **p, n_heads=cfg.n_heads, mask=mask, bias=bias,
                                            n_kv_heads=cfg.kv_heads)
    kv = cache.extend(*project_kv(h, h, p["w_k"], p["b_k"], p["w_v"], p["b_v"], n_heads=cfg.kv_heads))
    return multi_head_attention_forward(h, None, None, **p, n_heads=cfg.n_heads, mask=mask, bias=bias, kv=kv)


def self_attention_backward(dout, cache, p, cfg):
    """Returns (dh, grads): h gave the queries, the keys and the values, so its three gradients add."""
    dq, dk, dv, grads = multi_head_attention_backward(dout, cache, **p, n_heads=cfg.n_heads)
    return dq + dk + dv, grads


def cross_attention(h, memory, p, cfg, mask=None, bias=None, cache=None):
    """Multi-head attention of h (B, T, C) over the encoder memory (B, S, C); with a LayerCache the memory's
    keys and values are computed once and reused at every step.  Returns (out, weights, backward cache)."""
    if cache is None:
        return multi_head_attention_forward(h, memory, memory, **p, n_heads=cfg.n_heads, mask=mask, bias=bias,
                                            n_kv_heads=cfg.kv_heads)
    if cache.cross is None:
        cache.cross = project_kv(memory, memory, p["w_k"], p["b_k"], p["w_v"], p["b_v"], n_heads=cfg.kv_heads)
    return multi_head_attention_forward(h, None, None, **p, n_heads=cfg.n_heads, mask=mask, bias=bias,
                                        kv=cache.cross)


def cross_attention_backward(dout, cache, p, cfg):
    """Returns (dh, (grads, dmemory)): the memory gave the keys and the values."""
    dq, dk, dv, grads = multi_head_attention_backward(dout, cache, **p, n_heads=cfg.n_heads)
    return dq, (grads, dk + dv)


def ffn(h, p, cfg):
    """The position-wise feed-forward network as a sublayer f.  Returns (out, None, backward cache)."""
    out, cache = feed_forward_forward(h, **p, activation=cfg.activation)
    return out, None, cache


def ffn_backward(dout, cache, p, cfg):
    return feed_forward_backward(dout, cache, **p, activation=cfg.activation)


# --- layers ----------------------------------------------------------------------------------------
def encoder_layer(x, p, cfg, mask=None, bias=None, cache=None):
    r"""x -> AddNorm(x, SelfAttn(x)) -> AddNorm(·, FFN(·))      (paper §3.1, encoder)

    x: (B, S, C); mask/bias: broadcastable to (B, H, S, S).  Returns (x (B, S, C), weights (B, H, S, S)).
    With a causal mask this is also the block of a decoder-only (GPT-style) model; ``cache`` (a
    :class:`~transformer_np.decoding.cache.LayerCache`) then makes x the new positions only.
    """
    y, weights, _ = encoder_layer_forward(x, p, cfg, mask, bias, cache)
    return y, weights


def encoder_layer_forward(x, p, cfg, mask=None, bias=None, cache=None, rng=None):
    """encoder_layer, also returning the backward cache; rng turns on dropout (training).
    Returns (y, weights, backward cache)."""
    y, weights, attn = sublayer_forward(x, lambda h: self_attention(h, p["self_attn"], cfg, mask, bias, cache),
                                        p["norm1"], cfg, rng)  # (B, S, C)
    out, _, ff = sublayer_forward(y, lambda h: ffn(h, p["ffn"], cfg), p["norm2"], cfg, rng)  # (B, S, C)
    return out, weights, (attn, ff)


def encoder_layer_backward(dout, cache, p, cfg):
    """The forward's lines in reverse.  Returns (dx, grads shaped like p)."""
    attn, ff = cache
    g = {}
    dy, g["ffn"], g["norm2"] = sublayer_backward(dout, ff, lambda d, c: ffn_backward(d, c, p["ffn"], cfg), cfg)
    dx, g["self_attn"], g["norm1"] = sublayer_backward(
        dy, attn, lambda d, c: self_attention_backward(d, c, p["self_attn"], cfg), cfg)
    return dx, {k: g[k] for k in p}


def decoder_layer(y, memory, p, cfg, self_mask=None, cross_mask=None, self_bias=None, cross_bias=None,
                  cache=None):
    r"""y -> AddNorm(y, MaskedSelfAttn(y)) -> AddNorm(·, CrossAttn(·, memory)) -> AddNorm(·, FFN(·))

    y: (B, T, C) target stream; memory: (B, S, C) encoder output.  self_mask: (…, T, T), normally causal;
    cross_mask: (…, T, S).  Returns (y (B, T, C), (self weights (B, H, T, T), cross weights (B, H, T, S))).
    With ``cache`` (a LayerCache), y holds only the new positions and self_mask is (…, T, S_past + T).
    """
    out, weights, _ = decoder_layer_forward(y, memory, p, cfg, self_mask, cross_mask, self_bias, cross_bias,
                                            cache)
    return out, weights


def decoder_layer_forward(y, memory, p, cfg, self_mask=None, cross_mask=None, self_bias=None, cross_bias=None,
                          cache=None, rng=None):
    """decoder_layer, also returning the backward cache; rng turns on dropout (training)."""
    y1, w_self, attn1 = sublayer_forward(
        y, lambda h: self_attention(h, p["self_attn"], cfg, self_mask, self_bias, cache), p["norm1"], cfg, rng)
    y2, w_cross, attn2 = sublayer_forward(
        y1, lambda h: cross_attention(h, memory, p["cross_attn"], cfg, cross_mask, cross_bias, cache),
        p["norm2"], cfg, rng)  # (B, T, C)
    out, _, ff = sublayer_forward(y2, lambda h: ffn(h, p["ffn"], cfg), p["norm3"], cfg, rng)  # (B, T, C)
    return out, (w_self, w_cross), (attn1, attn2, ff)


def decoder_layer_backward(dout, cache, p, cfg):
    """The forward's lines in reverse.  Returns (dy, dmemory, grads shaped like p)."""
    attn1, attn2, ff = cache
    g = {}
    dy2, g["ffn"], g["norm3"] = sublayer_backward(dout, ff, lambda d, c: ffn_backward(d, c, p["ffn"], cfg), cfg)
    dy1, (g["cross_attn"], dmemory), g["norm2"] = sublayer_backward(
        dy2, attn2, lambda d, c: cross_attention_backward(d, c, p["cross_attn"], cfg), cfg)
    dy, g["self_attn"], g["norm1"] = sublayer_backward(
        dy1, attn1, lambda d, c: self_attention_backward(d, c, p["self_attn"], cfg), cfg)
    return dy, dmemory, {k: g[k] for k in p}
