r"""The training losses, each returning its gradient: the forward's call list, then the same calls reversed.

Dropout is on when a ``np.random.Generator`` is given; padding (cfg.pad_id) never counts in the loss.
"""

from __future__ import annotations

from ..core.embeddings import token_embedding_backward
from ..core.masks import causal_mask, combine_masks, padding_keys
from ..core.nn import (
    cross_entropy_backward,
    cross_entropy_forward,
    dropout_backward,
    dropout_forward,
    linear,
    linear_backward,
    mean_pool_backward,
    mean_pool_forward,
)
from .models import embed, not_padding, output_logits
from .stacks import decoder_backward, decoder_forward, encoder_backward, encoder_forward


def embed_forward(ids, p, cfg, rng=None):
    """embed followed by dropout (training).  Returns (x, dropout cache)."""
    return dropout_forward(embed(ids, p, cfg), cfg.dropout, rng)


def embed_backward(dx, drop, ids, cfg):
    """forward: x = dropout(E[ids] √C + PE); PE is fixed, so only the table gets a gradient: dE (V, C)."""
    return token_embedding_backward(dropout_backward(dx, drop), ids, cfg.vocab_size, scale=cfg.scale_embedding)


def output_forward_backward(y, params, cfg, targets, label_smoothing):
    """Output layer, cross-entropy and their backward.  Returns (loss, dy, grads of the output layer: {"out": …}
    or, tied, the table's gradient {"table": dW_outᵀ} to add to the embedding's)."""
    logits = output_logits(y, params, cfg)  # (B, T, V)
    loss, ce = cross_entropy_forward(logits, targets, label_smoothing, ignore_index=cfg.pad_id)
    if cfg.tie_embeddings:  # forward: logits = y Eᵀ, so dy = dlogits E and dE = dlogitsᵀ y
        dy, dw_t, _ = linear_backward(cross_entropy_backward(ce), y, params["embed"]["table"].T, has_bias=False)
        return loss, dy, {"table": dw_t.T}
    dy, dw, db = linear_backward(cross_entropy_backward(ce), y, params["out"]["w"])
    return loss, dy, {"out": {"w": dw, "b": db}}


def _with_output(grads, out):
    """The model's gradient tree with the output layer's gradient put in (added to the table's when tied)."""
    if "table" in out:
        grads["embed"]["table"] = grads["embed"]["table"] + out["table"]  # E is used twice: its gradients add
        return grads
    return grads | out


def transformer_loss(params, src, tgt_in, tgt_out, cfg, rng=None, label_smoothing=0.0):
    r"""Cross-entropy of the encoder-decoder's predictions of tgt_out given src and tgt_in (teacher forcing,
    tgt_in = tgt_out shifted right).  Returns (loss, grads shaped like params)."""
    keys = padding_keys(src, cfg.pad_id)  # (B, 1, 1, S)
    self_mask = combine_masks(causal_mask(tgt_in.shape[1], like=tgt_in), padding_keys(tgt_in, cfg.pad_id))
    x, drop_src = embed_forward(src, params["embed"], cfg, rng)  # (B, S, C)
    memory, _, enc = encoder_forward(x, params["encoder"], cfg, mask=keys, rng=rng)
    y, drop_tgt = embed_forward(tgt_in, params["embed"], cfg, rng)  # (B, T, C)
    out, _, dec = decoder_forward(y, memory, params["decoder"], cfg, self_mask, keys, rng=rng)
    loss, dout, g_out = output_forward_backward(out, params, cfg, tgt_out, label_smoothing)
    # backward
    dy, dmemory, g_dec = decoder_backward(dout, dec, params["decoder"], cfg)
    dx, g_enc = encoder_backward(dmemory, enc, params["encoder"], cfg)
    # one table embeds both sides: its two gradients add
    dtable = embed_backward(dy, drop_tgt, tgt_in, cfg) + embed_backward(dx, drop_src, src, cfg)
    return loss, _with_output({"embed": {"table": dtable}, "encoder": g_enc, "decoder": g_dec}, g_out)


def lm_loss(params, ids_in, ids_out, cfg, rng=None, label_smoothing=0.0):
    """Cross-entropy of a decoder-only LM's next-token predictions.  Returns (loss, grads)."""
    mask = combine_masks(causal_mask(ids_in.shape[1], like=ids_in), padding_keys(ids_in, cfg.pad_id))
    x, drop = embed_forward(ids_in, params["embed"], cfg, rng)
    h, _, stack = encoder_forward(x, params["decoder"], cfg, mask=mask, rng=rng)  # causal blocks
    loss, dh, g_out = output_forward_backward(h, params, cfg, ids_out, label_smoothing)
    # backward
    dx, g_stack = encoder_backward(dh, stack, params["decoder"], cfg)
    return loss, _with_output({"embed": {"table": embed_backward(dx, drop, ids_in, cfg)}, "decoder": g_stack},
                              g_out)


def classifier_loss(params, ids, labels, cfg, rng=None, label_smoothing=0.0):
    """Cross-entropy of the encoder classifier's class logits.  Returns (loss, grads)."""
    x, drop = embed_forward(ids, params["embed"], cfg, rng)
    h, _, stack = encoder_forward(x, params["encoder"], cfg, mask=padding_keys(ids, cfg.pad_id), rng=rng)
    pooled, pool = mean_pool_forward(h, not_padding(ids, cfg.pad_id))  # (B, C)
    logits = linear(pooled, **params["out"])  # (B, n_classes)
    loss, ce = cross_entropy_forward(logits, labels, label_smoothing)
    # backward
    dpooled, dw, db = linear_backward(cross_entropy_backward(ce), pooled, params["out"]["w"])
    dx, g_stack = encoder_backward(mean_pool_backward(dpooled, pool), stack, params["encoder"], cfg)
    return loss, {"embed": {"table": embed_backward(dx, drop, ids, cfg)}, "encoder": g_stack,
                  "out": {"w": dw, "b": db}}
