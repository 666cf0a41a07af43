r"""Stacks of layers: L layers, then a final layer norm if the config has one (paper §3.1, and nn.Transformer's
``norm``).  One loop serves every stack — the encoder, the decoder, a decoder-only LM's causal blocks and
BERT's encoder — forward and backward.
"""

from __future__ import annotations

from ..core.nn import layer_norm_backward, layer_norm_forward
from .layers import decoder_layer_backward, decoder_layer_forward, encoder_layer_backward, encoder_layer_forward


def stack_forward(layer_forward, x, p, cfg, *inputs, cache=None, rng=None, keep=True, reduce_weights=None,
                  **kwargs):
    """x through ``layer_forward(x, *inputs, p_layer, cfg, **kwargs, cache=, rng=)`` for each of p["layers"],
    then LN with p["norm"] if the stack has one.  ``cache``: one LayerCache per layer (incremental decoding).
    keep=False (inference) drops each layer's weights and backward cache as soon as the next layer runs, so
    memory stays that of one layer; reduce_weights (with keep): what is kept of each layer's weights, applied as
    soon as they are computed (a picture of T × T weights grouped in blocks).  Returns (x, [weights per layer],
    backward cache)."""
    weights, caches = [], []
    for i, lp in enumerate(p["layers"]):
        x, w, c = layer_forward(x, *inputs, lp, cfg, **kwargs, cache=None if cache is None else cache[i], rng=rng)
        if keep:
            weights.append(w if reduce_weights is None else reduce_weights(w))
            caches.append(c)
    ln = None
    if "norm" in p:
        x, ln = layer_norm_forward(x, **p["norm"], eps=cfg.layer_norm_eps)
    return x, weights, (caches, ln)


def stack_backward(layer_backward, dout, cache, p, cfg):
    """Returns (dx, d of the layers' second input summed over layers (the decoder's memory) or None, grads)."""
    caches, ln = cache
    grads = {"layers": [None] * len(caches)}
    if ln is not None:  # forward: x = LN(x)
        dout, dgamma, dbeta = layer_norm_backward(dout, ln)
        grads["norm"] = {"gamma": dgamma, "beta": dbeta}
    dmemory = None
    for i in reversed(range(len(caches))):
        dout, *dm, grads["layers"][i] = layer_backward(dout, caches[i], p["layers"][i], cfg)
        if dm:
            dmemory = dm[0] if dmemory is None else dmemory + dm[0]  # every layer reads the same memory
    return dout, dmemory, grads


def encoder(x, p, cfg, mask=None, bias=None, need_weights=False):
    r"""The encoder stack.  x: (B, S, C).  Returns (memory (B, S, C), [weights per layer] if need_weights)."""
    out, weights, _ = encoder_forward(x, p, cfg, mask, bias, keep=need_weights)
    return out, weights


def encoder_forward(x, p, cfg, mask=None, bias=None, rng=None, cache=None, keep=True):
    """encoder, also returning per-layer weights and the backward cache (see :func:`stack_forward`)."""
    return stack_forward(encoder_layer_forward, x, p, cfg, mask=mask, bias=bias, cache=cache, rng=rng, keep=keep)


def encoder_backward(dout, cache, p, cfg):
    """Returns (dx, grads shaped like p)."""
    dx, _, grads = stack_backward(encoder_layer_backward, dout, cache, p, cfg)
    return dx, grads


def decoder(y, memory, p, cfg, self_mask=None, cross_mask=None, self_bias=None, cross_bias=None,
            need_weights=False, cache=None):
    r"""The decoder stack.  y: (B, T, C), memory: (B, S, C); cache: optional list of LayerCache, one per layer.
    Returns (y (B, T, C), [(self, cross) weights per layer] if need_weights else [])."""
    out, weights, _ = decoder_forward(y, memory, p, cfg, self_mask, cross_mask, self_bias, cross_bias,
                                      cache=cache, keep=need_weights)
    return out, weights


def decoder_forward(y, memory, p, cfg, self_mask=None, cross_mask=None, self_bias=None, cross_bias=None,
                    cache=None, rng=None, keep=True):
    """decoder, also returning per-layer weights and the backward cache (kept only with keep=True)."""
    return stack_forward(decoder_layer_forward, y, p, cfg, memory, self_mask=self_mask, cross_mask=cross_mask,
                         self_bias=self_bias, cross_bias=cross_bias, cache=cache, rng=rng, keep=keep)


def decoder_backward(dout, cache, p, cfg):
    """Returns (dy, dmemory summed over layers, grads shaped like p)."""
    return stack_backward(decoder_layer_backward, dout, cache, p, cfg)
