r"""Position-wise building blocks: linear maps, activations, softmax, layer norm, residual, FFN.

Every function takes its array namespace from its inputs and keeps their dtype.
"""

from __future__ import annotations

import math

from .backend import array_namespace, device, erf
from .checks import check_choice, check_float, check_last_dim

ACTIVATIONS = ("relu", "gelu")


def linear(x, w, b=None):
    r"""y = x W + b

    x: (..., C_in)  w: (C_in, C_out)  b: (C_out,) or None.  Returns (..., C_out).
    (torch's nn.Linear stores W^T; the interop module transposes at the boundary.)
    """
    check_float("x", x)
    check_last_dim("x", x, w.shape[0], what=f"last dim (= w.shape[0] = {w.shape[0]})")
    xp = array_namespace(x)
    lead = tuple(x.shape[:-1])
    # one (N, C_in) @ (C_in, C_out) product for all leading dims: a batched x @ w would run one small
    # matrix product per batch row
    y = xp.reshape(xp.reshape(x, (-1, x.shape[-1])) @ w, (*lead, w.shape[1]))  # (..., C_out)
    if b is not None:
        y += b  # in place: y is our own fresh array
    return y


def relu(x):
    r"""ReLU(x) = max(0, x)"""
    xp = array_namespace(x)
    return xp.maximum(x, xp.zeros((), dtype=x.dtype, device=device(x)))


def gelu(x):
    r"""GELU(x) = x \Phi(x) = \tfrac{x}{2} (1 + \mathrm{erf}(x / \sqrt{2}))   (exact form, not the tanh one)"""
    phi = erf(x * (1.0 / math.sqrt(2.0)))  # erf(x / sqrt 2), a fresh array: finish in place
    phi += 1.0
    phi *= x
    phi *= 0.5
    return phi  # x/2 (1 + erf(x / sqrt 2))


def activation_fn(name):
    check_choice("activation", name, ACTIVATIONS)
    return relu if name == "relu" else gelu


def softmax(x, axis=-1, mask=None):
    r"""softmax(x)_i = e^{x_i - m} / \sum_j e^{x_j - m},  m = \max_j x_j   (stable: same value for any m)

    mask: optional bool array broadcastable to x, True where an entry takes part.  Masked entries get
    exactly 0; a row with every entry masked gets all zeros (not NaN, unlike torch).
    """
    check_float("x", x)
    xp = array_namespace(x)
    if mask is not None:
        x = xp.where(mask, x, -xp.inf)
    m = xp.max(x, axis=axis, keepdims=True)
    if mask is not None:
        m = xp.where(xp.isfinite(m), m, xp.zeros_like(m))  # fully masked row: any finite shift works
    e = xp.exp(x - m)  # masked entries: exp(-inf) = 0
    s = xp.sum(e, axis=axis, keepdims=True)
    if mask is not None:
        s = xp.where(s > 0, s, xp.ones_like(s))  # fully masked row: 0 / 1 = 0, not NaN
    e /= s  # in place: e is our own fresh array
    return e


def log_softmax(x, axis=-1):
    r"""\log softmax(x)_i = x_i - m - \log \sum_j e^{x_j - m}"""
    check_float("x", x)
    xp = array_namespace(x)
    z = x - xp.max(x, axis=axis, keepdims=True)
    return z - xp.log(xp.sum(xp.exp(z), axis=axis, keepdims=True))


def layer_norm(x, gamma, beta, eps=1e-5):
    r"""LN(x) = \gamma \odot (x - \mu) / \sqrt{\sigma^2 + \epsilon} + \beta over the last axis,
    with the biased variance \sigma^2 = \tfrac{1}{C}\sum_c (x_c - \mu)^2 and \epsilon inside the root
    (as torch's nn.LayerNorm and BERT).

    x: (..., C)  gamma, beta: (C,)
    """
    check_float("x", x)
    check_last_dim("x", x, gamma.shape[0], what=f"last dim (= gamma size {gamma.shape[0]})")
    xp = array_namespace(x)
    mu = xp.mean(x, axis=-1, keepdims=True)  # (..., 1)
    xc = x - mu  # (..., C)
    var = xp.mean(xc * xc, axis=-1, keepdims=True)  # (..., 1) biased
    x_hat = xc / xp.sqrt(var + eps)  # (..., C)
    return x_hat * gamma + beta


def residual(x, fx):
    r"""Residual(x) = x + f(x)   (the source document's §4.3; f(x) is a sublayer's output)"""
    if tuple(x.shape) != tuple(fx.shape):
        raise ValueError(f"residual needs x and f(x) of one shape, got {tuple(x.shape)} and {tuple(fx.shape)}")
    return x + fx


def feed_forward(x, w1, b1, w2, b2, activation="relu"):
    r"""FFN(x) = act(x W_1 + b_1) W_2 + b_2   (paper eq. 2, with act = ReLU; GELU optional)

    x: (..., C)  w1: (C, F)  w2: (F, C)
    """
    h = activation_fn(activation)(linear(x, w1, b1))  # (..., F)
    return linear(h, w2, b2)  # (..., C)
