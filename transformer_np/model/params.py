"""The params tree of a configuration: its layout (one builder per layer kind), seeded initial values, and
zero-memory placeholders of the right shapes (what checkpoints and optimiser states are checked against).

Keys are the argument names of the functions that use them, so a layer reads ``feed_forward(h, **p["ffn"])``.
"""

from __future__ import annotations

import math

import numpy as np


def attention_params(make, C, C_kv=None):
    """W_Q, W_O (C, C) and W_K, W_V (C, C_kv): C_kv = H_kv · D is smaller than C with grouped-query attention."""
    C_kv = C if C_kv is None else C_kv
    return {"w_q": make((C, C), "xavier"), "b_q": make((C,), "zeros"),
            "w_k": make((C, C_kv), "xavier"), "b_k": make((C_kv,), "zeros"),
            "w_v": make((C, C_kv), "xavier"), "b_v": make((C_kv,), "zeros"),
            "w_o": make((C, C), "xavier"), "b_o": make((C,), "zeros")}


def norm_params(make, C):
    return {"gamma": make((C,), "ones"), "beta": make((C,), "zeros")}


def ffn_params(make, C, F):
    return {"w1": make((C, F), "xavier"), "b1": make((F,), "zeros"),
            "w2": make((F, C), "xavier"), "b2": make((C,), "zeros")}


def encoder_layer_params(make, cfg):
    C = cfg.d_model
    return {"self_attn": attention_params(make, C, cfg.kv_heads * cfg.d_head), "norm1": norm_params(make, C),
            "ffn": ffn_params(make, C, cfg.d_ff), "norm2": norm_params(make, C)}


def decoder_layer_params(make, cfg):
    C = cfg.d_model
    C_kv = cfg.kv_heads * cfg.d_head
    return {"self_attn": attention_params(make, C, C_kv), "norm1": norm_params(make, C),
            "cross_attn": attention_params(make, C, C_kv), "norm2": norm_params(make, C),
            "ffn": ffn_params(make, C, cfg.d_ff), "norm3": norm_params(make, C)}


def stack_params(make, cfg, layer_fn, n_layers):
    p = {"layers": [layer_fn(make, cfg) for _ in range(n_layers)]}
    if cfg.final_norm:
        p["norm"] = norm_params(make, cfg.d_model)
    return p


def build_params(make, cfg):
    """The params tree of cfg's architecture, each leaf made by make(shape, kind).  A decoder-only model's
    layers are encoder layers (self-attention + FFN) run under a causal mask."""
    tree = {"embed": {"table": make((cfg.vocab_size, cfg.d_model), "embedding")}}
    if cfg.architecture == "decoder-only":
        tree["decoder"] = stack_params(make, cfg, encoder_layer_params, cfg.n_decoder_layers)
    elif cfg.architecture == "encoder-classifier":
        tree["encoder"] = stack_params(make, cfg, encoder_layer_params, cfg.n_encoder_layers)
        tree["out"] = {"w": make((cfg.d_model, cfg.n_classes), "xavier"), "b": make((cfg.n_classes,), "zeros")}
        return tree
    else:
        tree["encoder"] = stack_params(make, cfg, encoder_layer_params, cfg.n_encoder_layers)
        tree["decoder"] = stack_params(make, cfg, decoder_layer_params, cfg.n_decoder_layers)
    if not cfg.tie_embeddings:  # tied: the embedding table is the output layer too (paper §3.4)
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


def placeholder(dtype):
    """make(shape, kind) giving read-only, zero-stride arrays: right shape and dtype, no memory."""
    zero = np.zeros((), dtype=dtype)
    return lambda shape, kind: np.broadcast_to(zero, shape)


def param_shapes(cfg):
    """The params tree of cfg with zero-memory placeholder arrays as leaves (see :func:`placeholder`)."""
    return build_params(placeholder(cfg.dtype), cfg)
