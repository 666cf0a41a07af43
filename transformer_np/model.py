r"""Encoder and decoder layers, their stacks, and the models built from them (paper §3.1): the
encoder-decoder (the source document's model), a decoder-only LM and an encoder classifier — each layer and
model with its backward beside its forward, and the training losses with their gradients.

Parameters are a nested dict (the params tree) whose keys are the functions' argument names, so a layer
reads ``feed_forward(h, **p["ffn"])``.  Layers take the :class:`TransformerConfig` for their options.
"""

from __future__ import annotations

import math

import numpy as np

from .attention import multi_head_attention_backward, multi_head_attention_forward, project_kv
from .backend import array_namespace, device
from .checks import check_ids
from .config import TransformerConfig
from .embeddings import sinusoidal_positions, token_embedding, token_embedding_backward
from .masks import causal_mask, combine_masks, padding_mask
from .nn import (
    cross_entropy_backward,
    cross_entropy_forward,
    dropout_backward,
    dropout_forward,
    feed_forward_backward,
    feed_forward_forward,
    layer_norm,
    layer_norm_backward,
    layer_norm_forward,
    linear,
    linear_backward,
    residual,
    softmax,
)


# --- one sublayer: post-LN  LN(x + f(x))  or pre-LN  x + f(LN(x)) -----------------------------------
# Each *_forward returns (output, cache) and its *_backward walks the same lines in reverse; the plain
# functions used for inference call the forwards, so every layer is written once.
def sublayer_input(x, norm, cfg):
    """What f sees: LN(x) with pre-LN, x itself with post-LN (the paper).  Returns (h, LN cache or None)."""
    return layer_norm_forward(x, **norm, eps=cfg.layer_norm_eps) if cfg.norm_first else (x, None)


def sublayer_output(x, fx, norm, cfg):
    """x + f(x) with pre-LN; LN(x + f(x)) with post-LN (the paper, §5.4's 'Add & Norm').
    Returns (y, LN cache or None)."""
    y = residual(x, fx)
    return (y, None) if cfg.norm_first else layer_norm_forward(y, **norm, eps=cfg.layer_norm_eps)


def _norm_backward(d, ln_cache, grads, norm_name):
    """Through a layer norm if this sublayer side has one (its gradients stored under norm_name)."""
    if ln_cache is None:
        return d
    d, dgamma, dbeta = layer_norm_backward(d, ln_cache)
    grads[norm_name] = {"gamma": dgamma, "beta": dbeta}
    return d


def self_attention(h, p, cfg, mask=None, bias=None, cache=None):
    """Multi-head self-attention of h (B, T, C).  With a LayerCache (inference), the new keys and values are
    appended to the cached ones and the T queries attend to all S_past + T of them.
    Returns (out, weights, backward cache)."""
    if cache is None:
        return multi_head_attention_forward(h, h, h, **p, n_heads=cfg.n_heads, mask=mask, bias=bias)
    kv = cache.extend(*project_kv(h, h, p["w_k"], p["b_k"], p["w_v"], p["b_v"], n_heads=cfg.n_heads))
    return multi_head_attention_forward(h, None, None, **p, n_heads=cfg.n_heads, mask=mask, bias=bias, kv=kv)


def cross_attention(h, memory, p, cfg, mask=None, bias=None, cache=None):
    """Multi-head attention of h (B, T, C) over the encoder memory (B, S, C); with a LayerCache the memory's
    keys and values are computed once and reused at every step.  Returns (out, weights, backward cache)."""
    if cache is None:
        return multi_head_attention_forward(h, memory, memory, **p, n_heads=cfg.n_heads, mask=mask, bias=bias)
    if cache.cross is None:
        cache.cross = project_kv(memory, memory, p["w_k"], p["b_k"], p["w_v"], p["b_v"], n_heads=cfg.n_heads)
    return multi_head_attention_forward(h, None, None, **p, n_heads=cfg.n_heads, mask=mask, bias=bias,
                                        kv=cache.cross)


def encoder_layer(x, p, cfg, mask=None, bias=None, cache=None):
    r"""x -> AddNorm(x, SelfAttn(x)) -> AddNorm(·, FFN(·))      (paper §3.1, encoder)

    x: (B, S, C); mask/bias: broadcastable to (B, H, S, S).  Returns (x (B, S, C), weights (B, H, S, S)).
    With a causal mask this is also the block of a decoder-only (GPT-style) model; ``cache`` (a
    :class:`~transformer_np.cache.LayerCache`) then makes x the new positions only.
    """
    y, weights, _ = encoder_layer_forward(x, p, cfg, mask, bias, cache)
    return y, weights


def encoder_layer_forward(x, p, cfg, mask=None, bias=None, cache=None, rng=None):
    """encoder_layer, also returning the backward cache.  rng (a np.random.Generator) turns on dropout of
    rate cfg.dropout on each sublayer's output (training).  Returns (y, weights, backward cache)."""
    h, ln1 = sublayer_input(x, p["norm1"], cfg)
    a, weights, att = self_attention(h, p["self_attn"], cfg, mask=mask, bias=bias, cache=cache)
    a, drop1 = dropout_forward(a, cfg.dropout, rng)
    y, ln1_out = sublayer_output(x, a, p["norm1"], cfg)  # (B, S, C)
    h, ln2 = sublayer_input(y, p["norm2"], cfg)
    f, ffn = feed_forward_forward(h, **p["ffn"], activation=cfg.activation)
    f, drop2 = dropout_forward(f, cfg.dropout, rng)
    out, ln2_out = sublayer_output(y, f, p["norm2"], cfg)  # (B, S, C)
    return out, weights, (ln1 or ln1_out, att, drop1, ln2 or ln2_out, ffn, drop2)


def encoder_layer_backward(dout, cache, p, cfg):
    """The forward's lines in reverse.  Returns (dx, grads shaped like p)."""
    ln1, att, drop1, ln2, ffn, drop2 = cache
    grads = {}
    post = not cfg.norm_first
    d = _norm_backward(dout, ln2 if post else None, grads, "norm2")  # out = LN(y + f) (post-LN)
    df = dropout_backward(d, drop2)
    dh, grads["ffn"] = feed_forward_backward(df, ffn, **p["ffn"], activation=cfg.activation)
    dy = d + _norm_backward(dh, None if post else ln2, grads, "norm2")  # y feeds the residual and the FFN
    d = _norm_backward(dy, ln1 if post else None, grads, "norm1")  # y = LN(x + a) (post-LN)
    da = dropout_backward(d, drop1)
    dq, dk, dv, grads["self_attn"] = multi_head_attention_backward(da, att, **p["self_attn"], n_heads=cfg.n_heads)
    dx = d + _norm_backward(dq + dk + dv, None if post else ln1, grads, "norm1")  # x: residual, Q, K and V
    return dx, grads


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
    h, ln1 = sublayer_input(y, p["norm1"], cfg)
    a, w_self, att1 = self_attention(h, p["self_attn"], cfg, mask=self_mask, bias=self_bias, cache=cache)
    a, drop1 = dropout_forward(a, cfg.dropout, rng)
    y1, ln1_out = sublayer_output(y, a, p["norm1"], cfg)  # (B, T, C)
    h, ln2 = sublayer_input(y1, p["norm2"], cfg)
    a, w_cross, att2 = cross_attention(h, memory, p["cross_attn"], cfg, mask=cross_mask, bias=cross_bias,
                                       cache=cache)
    a, drop2 = dropout_forward(a, cfg.dropout, rng)
    y2, ln2_out = sublayer_output(y1, a, p["norm2"], cfg)  # (B, T, C)
    h, ln3 = sublayer_input(y2, p["norm3"], cfg)
    f, ffn = feed_forward_forward(h, **p["ffn"], activation=cfg.activation)
    f, drop3 = dropout_forward(f, cfg.dropout, rng)
    out, ln3_out = sublayer_output(y2, f, p["norm3"], cfg)
    return out, (w_self, w_cross), (ln1 or ln1_out, att1, drop1, ln2 or ln2_out, att2, drop2,
                                    ln3 or ln3_out, ffn, drop3)


def decoder_layer_backward(dout, cache, p, cfg):
    """The forward's lines in reverse.  Returns (dy, dmemory, grads shaped like p)."""
    ln1, att1, drop1, ln2, att2, drop2, ln3, ffn, drop3 = cache
    grads = {}
    post = not cfg.norm_first
    d = _norm_backward(dout, ln3 if post else None, grads, "norm3")
    dh, grads["ffn"] = feed_forward_backward(dropout_backward(d, drop3), ffn, **p["ffn"], activation=cfg.activation)
    dy2 = d + _norm_backward(dh, None if post else ln3, grads, "norm3")  # y2: residual and FFN input
    d = _norm_backward(dy2, ln2 if post else None, grads, "norm2")
    dq, dk, dv, grads["cross_attn"] = multi_head_attention_backward(dropout_backward(d, drop2), att2,
                                                                    **p["cross_attn"], n_heads=cfg.n_heads)
    dmemory = dk + dv  # the memory gave the keys and the values
    dy1 = d + _norm_backward(dq, None if post else ln2, grads, "norm2")  # y1: residual and queries
    d = _norm_backward(dy1, ln1 if post else None, grads, "norm1")
    dq, dk, dv, grads["self_attn"] = multi_head_attention_backward(dropout_backward(d, drop1), att1,
                                                                   **p["self_attn"], n_heads=cfg.n_heads)
    dy = d + _norm_backward(dq + dk + dv, None if post else ln1, grads, "norm1")
    return dy, dmemory, grads


def encoder(x, p, cfg, mask=None, bias=None, need_weights=False):
    r"""The encoder stack: L encoder layers, then LN if cfg.final_norm.  x: (B, S, C).
    Returns (memory (B, S, C), [weights per layer] if need_weights else [])."""
    out, weights, _ = encoder_forward(x, p, cfg, mask, bias, keep=need_weights)
    return out, weights


def encoder_forward(x, p, cfg, mask=None, bias=None, rng=None, cache=None, keep=True):
    """encoder, also returning per-layer weights and the backward cache.  ``cache``: a list of LayerCache
    (one per layer) for incremental decoding with causal blocks.  keep=False (inference) drops each layer's
    weights and backward cache as soon as the next layer runs, so memory stays that of one layer."""
    weights, caches = [], []
    for i, lp in enumerate(p["layers"]):
        x, w, c = encoder_layer_forward(x, lp, cfg, mask=mask, bias=bias, rng=rng,
                                        cache=None if cache is None else cache[i])
        if keep:
            weights.append(w)
            caches.append(c)
    ln = None
    if cfg.final_norm:
        x, ln = layer_norm_forward(x, **p["norm"], eps=cfg.layer_norm_eps)
    return x, weights, (caches, ln)


def encoder_backward(dout, cache, p, cfg):
    """Returns (dx, grads shaped like p)."""
    caches, ln = cache
    grads = {"layers": [None] * len(caches)}
    dout = _norm_backward(dout, ln, grads, "norm")
    for i in reversed(range(len(caches))):
        dout, grads["layers"][i] = encoder_layer_backward(dout, caches[i], p["layers"][i], cfg)
    return dout, grads


def decoder(y, memory, p, cfg, self_mask=None, cross_mask=None, self_bias=None, cross_bias=None,
            need_weights=False, cache=None):
    r"""The decoder stack: L decoder layers, then LN if cfg.final_norm.  y: (B, T, C), memory: (B, S, C).
    cache: optional list of LayerCache, one per layer.
    Returns (y (B, T, C), [(self, cross) weights per layer] if need_weights else [])."""
    out, weights, _ = decoder_forward(y, memory, p, cfg, self_mask, cross_mask, self_bias, cross_bias,
                                      cache=cache, keep=need_weights)
    return out, weights


def decoder_forward(y, memory, p, cfg, self_mask=None, cross_mask=None, self_bias=None, cross_bias=None,
                    cache=None, rng=None, keep=True):
    """decoder, also returning per-layer weights and the backward cache (kept only with keep=True)."""
    weights, caches = [], []
    for i, lp in enumerate(p["layers"]):
        y, w, c = decoder_layer_forward(y, memory, lp, cfg, self_mask, cross_mask, self_bias, cross_bias,
                                        cache=None if cache is None else cache[i], rng=rng)
        if keep:
            weights.append(w)
            caches.append(c)
    ln = None
    if cfg.final_norm:
        y, ln = layer_norm_forward(y, **p["norm"], eps=cfg.layer_norm_eps)
    return y, weights, (caches, ln)


def decoder_backward(dout, cache, p, cfg):
    """Returns (dy, dmemory summed over layers, grads shaped like p)."""
    caches, ln = cache
    grads = {"layers": [None] * len(caches)}
    dout = _norm_backward(dout, ln, grads, "norm")
    dmemory = None
    for i in reversed(range(len(caches))):
        dout, dm, grads["layers"][i] = decoder_layer_backward(dout, caches[i], p["layers"][i], cfg)
        dmemory = dm if dmemory is None else dmemory + dm  # every layer reads the same memory
    return dout, dmemory, grads


def embed(ids, p, cfg, offset=0, positions=None):
    r"""x = Emb(ids) + PE[pos]: token embedding (scaled by \sqrt{C}) plus sin-cos position.

    ids: int (B, T) -> (B, T, C).  Positions are offset … offset+T-1 for every row, or ``positions``
    (B, T) per token (left-padded batches, where each row counts its own positions)."""
    if ids.ndim != 2:
        raise ValueError(f"token ids must be (B, T), got shape {tuple(ids.shape)}")
    x = token_embedding(ids, p["table"], scale=cfg.scale_embedding)  # (B, T, C)
    if positions is None:
        if offset + ids.shape[1] > cfg.max_len:
            raise ValueError(f"position {offset + ids.shape[1] - 1} is past max_len={cfg.max_len}")
        xp = array_namespace(ids)
        positions = xp.arange(offset, offset + ids.shape[1], device=device(ids))  # (T,): broadcasts over B
    else:
        check_ids("positions", positions, cfg.max_len)
    return x + sinusoidal_positions(positions, cfg.d_model, dtype=x.dtype)  # (B, T, C)


def check_tokens(name, ids, cfg, offset=0):
    """Token ids (B, len) in [0, V), short enough for the positional table."""
    check_ids(name, ids, cfg.vocab_size)
    if ids.ndim != 2 or ids.shape[1] < 1 or offset + ids.shape[1] > cfg.max_len:
        raise ValueError(f"{name} must be (B, len) with 1 <= len <= max_len={cfg.max_len}"
                         f"{f' - {offset} cached' if offset else ''}, got shape {tuple(ids.shape)}")


def encode(params, src, cfg, src_mask=None, need_weights=False):
    r"""memory = Encoder(Emb(src) + PE).  src: int (B, S).
    Returns (memory (B, S, C), key mask of the source's padding (B, 1, 1, S) or None, [weights per layer])."""
    check_tokens("src", src, cfg)
    src_keys = padding_mask(ids=src, pad_id=cfg.pad_id) if cfg.pad_id is not None else None  # (B, 1, 1, S)
    x = embed(src, params["embed"], cfg)  # (B, S, C)
    memory, weights = encoder(x, params["encoder"], cfg, mask=combine_masks(src_mask, src_keys),
                              need_weights=need_weights)
    return memory, src_keys, weights


def decode(params, tgt, memory, cfg, tgt_mask=None, memory_mask=None, memory_keys=None, cache=None,
           need_weights=False):
    r"""logits = Linear(Decoder(Emb(tgt) + PE, memory)).  tgt: int (B, T), memory: (B, S, C).

    tgt_mask defaults to the causal mask.  With ``cache`` (one LayerCache per decoder layer), tgt holds only
    the new tokens, which sit after the cached positions; target padding is then not masked (generation
    keeps every row the same length).  Returns (logits (B, T, V), [(self, cross) weights per layer])."""
    past = 0 if cache is None else cache[0].length
    check_tokens("tgt", tgt, cfg, offset=past)
    if tgt.shape[0] != memory.shape[0]:
        raise ValueError(f"tgt and memory must share the batch size, got {tgt.shape[0]} and {memory.shape[0]}")
    if tgt_mask is None:
        tgt_mask = causal_mask(tgt.shape[1], past + tgt.shape[1], like=tgt)  # (T, S_past + T)
    tgt_keys = padding_mask(ids=tgt, pad_id=cfg.pad_id) if cfg.pad_id is not None and cache is None else None
    y = embed(tgt, params["embed"], cfg, offset=past)  # (B, T, C)
    out, weights = decoder(y, memory, params["decoder"], cfg, self_mask=combine_masks(tgt_mask, tgt_keys),
                           cross_mask=combine_masks(memory_mask, memory_keys), need_weights=need_weights,
                           cache=cache)
    return linear(out, **params["out"]), weights  # (B, T, V)


def transformer_forward(params, src, tgt, cfg, src_mask=None, tgt_mask=None, memory_mask=None,
                        need_weights=False):
    r"""logits = Linear(Decoder(Emb(tgt) + PE, Encoder(Emb(src) + PE)))     (paper fig. 1)

    src: int (B, S)  tgt: int (B, T).  Masks (bool, True = may attend): src_mask (…, S, S),
    tgt_mask (…, T, T) — default causal —, memory_mask (…, T, S).  With cfg.pad_id set, padding keys
    are masked too.  Returns (logits (B, T, V), attention dict, empty unless need_weights).
    """
    check_tokens("src", src, cfg)
    check_tokens("tgt", tgt, cfg)
    if src.shape[0] != tgt.shape[0]:
        raise ValueError(f"src and tgt must share the batch size, got {src.shape[0]} and {tgt.shape[0]}")
    memory, src_keys, enc_w = encode(params, src, cfg, src_mask, need_weights)  # (B, S, C)
    logits, dec_w = decode(params, tgt, memory, cfg, tgt_mask, memory_mask, src_keys, need_weights=need_weights)
    attention = {}
    if need_weights:
        attention = {"encoder": enc_w, "decoder_self": [w[0] for w in dec_w],
                     "decoder_cross": [w[1] for w in dec_w]}
    return logits, attention


def lm_forward(params, ids, cfg, positions=None, key_mask=None, cache=None, need_weights=False):
    r"""logits = Linear(LN(Blocks(Emb(ids) + PE)))  for a decoder-only (GPT-style) language model: every
    block is an encoder layer under the causal mask.

    ids: int (B, T).  positions: optional (B, T) per-token positions (left-padded batches).  key_mask:
    optional bool (B, 1, 1, S_past + T), False at padding keys (default: from cfg.pad_id, without a cache).
    cache: one LayerCache per layer; ids are then the new tokens only.
    Returns (logits (B, T, V), [self-attention weights per layer] if need_weights else [])."""
    past = 0 if cache is None else cache[0].length
    check_tokens("ids", ids, cfg, offset=past)
    if key_mask is None and cfg.pad_id is not None and cache is None:
        key_mask = padding_mask(ids=ids, pad_id=cfg.pad_id)  # (B, 1, 1, T)
    mask = combine_masks(causal_mask(ids.shape[1], past + ids.shape[1], like=ids), key_mask)
    x = embed(ids, params["embed"], cfg, offset=past, positions=positions)  # (B, T, C)
    weights = []
    for i, lp in enumerate(params["decoder"]["layers"]):
        x, w = encoder_layer(x, lp, cfg, mask=mask, cache=None if cache is None else cache[i])
        if need_weights:
            weights.append(w)
    if cfg.final_norm:
        x = layer_norm(x, **params["decoder"]["norm"], eps=cfg.layer_norm_eps)
    return linear(x, **params["out"]), weights  # (B, T, V)


def classifier_forward(params, ids, cfg, need_weights=False):
    r"""logits = Linear(mean_{t: not padding} Encoder(Emb(ids) + PE)_t): an encoder-only classifier.
    ids: int (B, T), padded with cfg.pad_id.  Returns (logits (B, n_classes), [weights per layer])."""
    check_tokens("ids", ids, cfg)
    keys = padding_mask(ids=ids, pad_id=cfg.pad_id) if cfg.pad_id is not None else None  # (B, 1, 1, T)
    h, weights, _ = encoder_forward(embed(ids, params["embed"], cfg), params["encoder"], cfg, mask=keys,
                                    keep=need_weights)
    pooled, _ = mean_pool_forward(h, ids, cfg)
    return linear(pooled, **params["out"]), (weights if need_weights else [])


def mean_pool_forward(h, ids, cfg):
    r"""e = \sum_t m_t h_t / \sum_t m_t over the non-padding tokens.  Returns (e (B, C), m / n (B, T, 1))."""
    xp = array_namespace(h)
    m = xp.ones(ids.shape, dtype=h.dtype, device=device(h)) if cfg.pad_id is None else \
        xp.astype(ids != cfg.pad_id, h.dtype)
    weights = (m / xp.clip(xp.sum(m, axis=1, keepdims=True), min=1.0))[..., None]  # (B, T, 1)
    return xp.sum(h * weights, axis=1), weights


# --- training: each loss with its gradient, the forward's call list reversed ------------------------
def embed_forward(ids, p, cfg, rng=None):
    """embed followed by dropout (training).  Returns (x, dropout cache)."""
    return dropout_forward(embed(ids, p, cfg), cfg.dropout, rng)


def embed_backward(dx, drop, ids, cfg):
    """forward: x = dropout(E[ids] √C + PE); PE is fixed, so only the table gets a gradient: dE (V, C)."""
    return token_embedding_backward(dropout_backward(dx, drop), ids, cfg.vocab_size, scale=cfg.scale_embedding)


def transformer_loss(params, src, tgt_in, tgt_out, cfg, rng=None, label_smoothing=0.0):
    r"""Cross-entropy of the encoder-decoder's predictions of tgt_out given src and tgt_in (teacher forcing,
    tgt_in = tgt_out shifted right), padding (cfg.pad_id) ignored; dropout on when rng is given.
    Returns (loss, grads shaped like params)."""
    keys = padding_mask(ids=src, pad_id=cfg.pad_id) if cfg.pad_id is not None else None  # (B, 1, 1, S)
    tgt_keys = padding_mask(ids=tgt_in, pad_id=cfg.pad_id) if cfg.pad_id is not None else None
    self_mask = combine_masks(causal_mask(tgt_in.shape[1], like=tgt_in), tgt_keys)
    x, drop_src = embed_forward(src, params["embed"], cfg, rng)  # (B, S, C)
    memory, _, enc = encoder_forward(x, params["encoder"], cfg, mask=keys, rng=rng)
    y, drop_tgt = embed_forward(tgt_in, params["embed"], cfg, rng)  # (B, T, C)
    out, _, dec = decoder_forward(y, memory, params["decoder"], cfg, self_mask, keys, rng=rng)
    logits = linear(out, **params["out"])  # (B, T, V)
    loss, ce = cross_entropy_forward(logits, tgt_out, label_smoothing, ignore_index=cfg.pad_id)
    # backward
    dout, dw, db = linear_backward(cross_entropy_backward(ce), out, params["out"]["w"])
    dy, dmemory, g_dec = decoder_backward(dout, dec, params["decoder"], cfg)
    dx, g_enc = encoder_backward(dmemory, enc, params["encoder"], cfg)
    # one table embeds both sides: its two gradients add
    dtable = embed_backward(dy, drop_tgt, tgt_in, cfg) + embed_backward(dx, drop_src, src, cfg)
    return loss, {"embed": {"table": dtable}, "encoder": g_enc, "decoder": g_dec, "out": {"w": dw, "b": db}}


def lm_loss(params, ids_in, ids_out, cfg, rng=None, label_smoothing=0.0):
    """Cross-entropy of a decoder-only LM's next-token predictions; padding ignored.  Returns (loss, grads)."""
    keys = padding_mask(ids=ids_in, pad_id=cfg.pad_id) if cfg.pad_id is not None else None
    mask = combine_masks(causal_mask(ids_in.shape[1], like=ids_in), keys)
    x, drop = embed_forward(ids_in, params["embed"], cfg, rng)
    h, _, stack = encoder_forward(x, params["decoder"], cfg, mask=mask, rng=rng)  # causal blocks
    logits = linear(h, **params["out"])
    loss, ce = cross_entropy_forward(logits, ids_out, label_smoothing, ignore_index=cfg.pad_id)
    dh, dw, db = linear_backward(cross_entropy_backward(ce), h, params["out"]["w"])
    dx, g_stack = encoder_backward(dh, stack, params["decoder"], cfg)
    return loss, {"embed": {"table": embed_backward(dx, drop, ids_in, cfg)}, "decoder": g_stack,
                  "out": {"w": dw, "b": db}}


def classifier_loss(params, ids, labels, cfg, rng=None, label_smoothing=0.0):
    """Cross-entropy of the encoder classifier's class logits.  Returns (loss, grads)."""
    keys = padding_mask(ids=ids, pad_id=cfg.pad_id) if cfg.pad_id is not None else None
    x, drop = embed_forward(ids, params["embed"], cfg, rng)
    h, _, stack = encoder_forward(x, params["encoder"], cfg, mask=keys, rng=rng)  # (B, T, C)
    pooled, pool_w = mean_pool_forward(h, ids, cfg)  # (B, C)
    logits = linear(pooled, **params["out"])  # (B, n_classes)
    loss, ce = cross_entropy_forward(logits, labels, label_smoothing)
    dpooled, dw, db = linear_backward(cross_entropy_backward(ce), pooled, params["out"]["w"])
    dh = dpooled[:, None, :] * pool_w  # forward: pooled = sum_t w_t h_t
    dx, g_stack = encoder_backward(dh, stack, params["encoder"], cfg)
    return loss, {"embed": {"table": embed_backward(dx, drop, ids, cfg)}, "encoder": g_stack,
                  "out": {"w": dw, "b": db}}


# --- parameters ------------------------------------------------------------------------------------
def _attn_params(make, C):
    return {"w_q": make((C, C), "xavier"), "b_q": make((C,), "zeros"),
            "w_k": make((C, C), "xavier"), "b_k": make((C,), "zeros"),
            "w_v": make((C, C), "xavier"), "b_v": make((C,), "zeros"),
            "w_o": make((C, C), "xavier"), "b_o": make((C,), "zeros")}


def _norm_params(make, C):
    return {"gamma": make((C,), "ones"), "beta": make((C,), "zeros")}


def _ffn_params(make, C, F):
    return {"w1": make((C, F), "xavier"), "b1": make((F,), "zeros"),
            "w2": make((F, C), "xavier"), "b2": make((C,), "zeros")}


def encoder_layer_params(make, cfg):
    C = cfg.d_model
    return {"self_attn": _attn_params(make, C), "norm1": _norm_params(make, C),
            "ffn": _ffn_params(make, C, cfg.d_ff), "norm2": _norm_params(make, C)}


def decoder_layer_params(make, cfg):
    C = cfg.d_model
    return {"self_attn": _attn_params(make, C), "norm1": _norm_params(make, C),
            "cross_attn": _attn_params(make, C), "norm2": _norm_params(make, C),
            "ffn": _ffn_params(make, C, cfg.d_ff), "norm3": _norm_params(make, C)}


def _stack_params(make, cfg, layer_fn, n_layers):
    p = {"layers": [layer_fn(make, cfg) for _ in range(n_layers)]}
    if cfg.final_norm:
        p["norm"] = _norm_params(make, cfg.d_model)
    return p


def build_params(make, cfg):
    """The params tree of cfg's architecture, each leaf made by make(shape, kind).  A decoder-only model's
    layers are encoder layers (self-attention + FFN) run under a causal mask."""
    tree = {"embed": {"table": make((cfg.vocab_size, cfg.d_model), "embedding")}}
    if cfg.architecture == "decoder-only":
        tree["decoder"] = _stack_params(make, cfg, encoder_layer_params, cfg.n_decoder_layers)
    elif cfg.architecture == "encoder-classifier":
        tree["encoder"] = _stack_params(make, cfg, encoder_layer_params, cfg.n_encoder_layers)
        tree["out"] = {"w": make((cfg.d_model, cfg.n_classes), "xavier"), "b": make((cfg.n_classes,), "zeros")}
        return tree
    else:
        tree["encoder"] = _stack_params(make, cfg, encoder_layer_params, cfg.n_encoder_layers)
        tree["decoder"] = _stack_params(make, cfg, decoder_layer_params, cfg.n_decoder_layers)
    tree["out"] = {"w": make((cfg.d_model, cfg.vocab_size), "xavier"), "b": make((cfg.vocab_size,), "zeros")}
    return tree


def initializer(rng, dtype="float32"):
    """make(shape, kind) for build_params: Xavier-uniform matrices (as nn.Transformer), zero biases,
    unit layer-norm gains, N(0, 1/C) embeddings (unit variance after the sqrt(C) scale)."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")

    def make(shape, kind):
        if kind == "xavier":
            limit = math.sqrt(6.0 / (shape[0] + shape[1]))
            a = rng.uniform(-limit, limit, size=shape)
        elif kind == "embedding":
            a = rng.normal(0.0, shape[1] ** -0.5, size=shape)
        elif kind == "ones":
            a = np.ones(shape)
        else:
            a = np.zeros(shape)
        return a.astype(dtype)

    return make


def init_params(cfg, seed=0):
    """Deterministic parameters for cfg from a seed (or a np.random.Generator); no global state."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    return build_params(initializer(rng, cfg.dtype), cfg)


def param_shapes(cfg):
    """The params tree of cfg with read-only, zero-stride placeholder arrays as leaves: right shape and
    dtype, no memory allocated."""
    zero = np.zeros((), dtype=cfg.dtype)
    return build_params(lambda shape, kind: np.broadcast_to(zero, shape), cfg)


# --- models: a config and a params tree, calling the functions above ---------------------------------
class Model:
    """What every model class shares: a frozen config, a params tree, counting, saving and loading."""

    architecture = None

    @classmethod
    def from_config(cls, cfg, params=None, seed=0):
        if cls.architecture is not None and cfg.architecture != cls.architecture:
            raise ValueError(f"{cls.__name__} needs architecture={cls.architecture!r}, got {cfg.architecture!r}")
        model = cls.__new__(cls)
        model.config = cfg
        model.params = init_params(cfg, seed) if params is None else params
        return model

    def num_parameters(self):
        from .params import count_params

        return count_params(self.params)

    def save(self, path):
        """Write config and params to one .npz (no pickle), atomically."""
        from .params import save_checkpoint

        save_checkpoint(path, self.params, self.config)

    @classmethod
    def load(cls, path):
        from .params import load_checkpoint

        params, cfg = load_checkpoint(path)
        return cls.from_config(cfg, params)


# --- the source document's model, fixed ------------------------------------------------------------
class Transformer(Model):
    r"""The source document's ``Transformer(d_model, nhead, num_layers, num_classes)``, rebuilt in NumPy.

    ``Transformer(d_model, nhead, num_layers, num_classes)(src, tgt)`` maps token ids src (B, S) and
    tgt (B, T) to logits (B, T, num_classes), as the listing's ``forward`` does, with these of its bugs fixed:

    1. ``init_weight`` is undefined, and ``nn.Parameter(init_weight(d_model))`` would be a trainable vector
       of shape (d_model,), added identically at every position — no position information at all.  Here:
       the sin-cos table of shape (max_len, d_model), sliced to the sequence length (paper §3.5).
    2. ``tgt`` was fed to nn.Transformer as raw token ids.  Here it is embedded and position-encoded like src.
    3. ``nn.Transformer`` has no ``num_layers`` argument.  Here num_layers sets both the encoder and the
       decoder depth (torch: num_encoder_layers = num_decoder_layers = num_layers).
    4. With ``tgt_mask=None`` the decoder could attend to future target tokens.  Here tgt_mask defaults to
       the causal mask.
    5. Embeddings were not scaled; here they are multiplied by sqrt(d_model) (paper §3.4;
       ``scale_embedding=False`` turns it off).
    Conventions that differ from the listing: arrays are batch-first (B, len); masks are boolean with
    **True where attention is allowed** (torch's bool masks mean the opposite — use
    ``interop.from_torch`` to call with torch's conventions).  Keyword arguments are TransformerConfig
    fields (dim_feedforward → d_ff, 2048 by default as in nn.Transformer).
    """

    def __init__(self, d_model=512, nhead=8, num_layers=6, num_classes=1000, *, seed=0, params=None,
                 **config):
        self.config = TransformerConfig(d_model=d_model, n_heads=nhead, n_encoder_layers=num_layers,
                                        n_decoder_layers=num_layers, vocab_size=num_classes, **config)
        self.params = init_params(self.config, seed) if params is None else params

    architecture = "encoder-decoder"

    def __call__(self, src, tgt, src_mask=None, tgt_mask=None, memory_mask=None):
        """logits (B, T, V) for token ids src (B, S) and tgt (B, T)."""
        return transformer_forward(self.params, src, tgt, self.config, src_mask, tgt_mask, memory_mask)[0]

    forward = __call__

    def forward_with_attention(self, src, tgt, src_mask=None, tgt_mask=None, memory_mask=None):
        """(logits, {"encoder": [...], "decoder_self": [...], "decoder_cross": [...]}) per layer (B, H, ·, ·)."""
        return transformer_forward(self.params, src, tgt, self.config, src_mask, tgt_mask, memory_mask,
                                   need_weights=True)

    def predict_proba(self, src, tgt, **masks):
        """softmax over the vocabulary of the logits: (B, T, V), rows sum to 1."""
        return softmax(self(src, tgt, **masks), axis=-1)

    def __repr__(self):
        c = self.config
        return (f"Transformer(d_model={c.d_model}, nhead={c.n_heads}, layers={c.n_encoder_layers}+"
                f"{c.n_decoder_layers}, num_classes={c.vocab_size}, params={self.num_parameters():,})")


class DecoderLM(Model):
    r"""A decoder-only (GPT-style) language model built from the same layer functions: token embedding +
    sin-cos positions, L causal self-attention blocks (pre-LN by default in :meth:`TransformerConfig.lm_tiny`),
    a final layer norm and the output projection.  ``model(ids)`` returns logits (B, T, V)."""

    architecture = "decoder-only"

    def __init__(self, cfg, params=None, seed=0):
        if cfg.architecture != "decoder-only":
            raise ValueError(f"DecoderLM needs architecture='decoder-only', got {cfg.architecture!r}")
        self.config = cfg
        self.params = init_params(cfg, seed) if params is None else params

    def __call__(self, ids, positions=None, key_mask=None):
        return lm_forward(self.params, ids, self.config, positions, key_mask)[0]

    def forward_with_attention(self, ids):
        """(logits, [self-attention weights (B, H, T, T) per layer])."""
        return lm_forward(self.params, ids, self.config, need_weights=True)

    def __repr__(self):
        c = self.config
        return (f"DecoderLM(d_model={c.d_model}, n_heads={c.n_heads}, layers={c.n_decoder_layers}, "
                f"vocab={c.vocab_size}, params={self.num_parameters():,})")


def load_model(path):
    """A Transformer or a DecoderLM, whichever the checkpoint's config describes."""
    from .params import load_checkpoint

    params, cfg = load_checkpoint(path)
    return (DecoderLM if cfg.architecture == "decoder-only" else Transformer).from_config(cfg, params)


__all__ = [
    "Model",
    "DecoderLM",
    "load_model",
    "lm_forward",
    "encode",
    "decode",
    "Transformer",
    "TransformerConfig",
    "encoder_layer",
    "decoder_layer",
    "encoder",
    "decoder",
    "embed",
    "transformer_forward",
    "init_params",
    "param_shapes",
]
