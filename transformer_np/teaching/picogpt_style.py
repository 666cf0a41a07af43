r"""A peer to measure against: the encoder forward written the way picoGPT (a well-known, minimal GPT-2 in NumPy)
writes its blocks — one sequence as a (T, C) array, the heads as a Python list of column slices, a separate
softmax, the tanh approximation of GELU, layer norm from ``np.mean`` and ``np.var``, each step a fresh array.

Our own code, in that style, on our params tree (pre-LN blocks, as GPT-2's):

    x = x + W_O [attention(LN₁(x) W_q^h, LN₁(x) W_k^h, LN₁(x) W_v^h) for each head h]
    x = x + W₂ GELU_tanh(LN₂(x) W₁)

It is not causal (the benchmark's encoder is bidirectional) and uses GELU's tanh form, so it differs from
:func:`transformer_np.model.stacks.encoder` by that approximation only (about 1e-3; a test binds them).
``bench forward`` times it beside ours on the same weights.
"""

from __future__ import annotations

import numpy as np


def gelu_tanh(x):
    r"""GELU(x) ≈ ½ x (1 + tanh(√(2/π) (x + 0.044715 x³)))"""
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def softmax(x):
    e = np.exp(x - np.max(x, axis=-1, keepdims=True))
    return e / np.sum(e, axis=-1, keepdims=True)


def layer_norm(x, gamma, beta, eps=1e-5):
    mean = np.mean(x, axis=-1, keepdims=True)
    var = np.var(x, axis=-1, keepdims=True)
    return gamma * (x - mean) / np.sqrt(var + eps) + beta


def attention(q, k, v):
    return softmax(q @ k.T / np.sqrt(q.shape[-1])) @ v


def multi_head(x, p, n_heads):
    """Each projection, then the heads one by one as a list, stacked back side by side."""
    q, k, v = x @ p["w_q"] + p["b_q"], x @ p["w_k"] + p["b_k"], x @ p["w_v"] + p["b_v"]
    heads = [attention(*parts) for parts in zip(*(np.split(a, n_heads, axis=-1) for a in (q, k, v)))]
    return np.hstack(heads) @ p["w_o"] + p["b_o"]


def block(x, p, n_heads, eps):
    x = x + multi_head(layer_norm(x, **p["norm1"], eps=eps), p["self_attn"], n_heads)
    f = p["ffn"]
    return x + gelu_tanh(layer_norm(x, **p["norm2"], eps=eps) @ f["w1"] + f["b1"]) @ f["w2"] + f["b2"]


def encoder(x, params, cfg):
    """x (B, T, C) through the pre-LN encoder stack, one sequence at a time (picoGPT has no batch axis)."""
    out = []
    for seq in x:
        for p in params["layers"]:
            seq = block(seq, p, cfg.n_heads, cfg.layer_norm_eps)
        out.append(layer_norm(seq, **params["norm"], eps=cfg.layer_norm_eps))
    return np.stack(out)
