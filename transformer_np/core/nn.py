r"""Position-wise building blocks: linear maps, activations, softmax, layer norm and RMSNorm, residual, FFN and
SwiGLU, dropout, pooling and the cross-entropy loss — each forward with its backward beside it (``*_forward``
returns the cache that ``*_backward`` needs; the plain function used for inference calls the forward, so each
formula is written once).

Every function takes its array namespace from its inputs and keeps their dtype.
"""

from __future__ import annotations

import math

from . import fast
from .backend import array_namespace, device, erf, keep_mask
from .checks import check_choice, check_float, check_last_dim, check_positive_int, check_real

ACTIVATIONS = ("relu", "gelu")


def linear(x, w, b=None):
    r"""y = x W + b

    x: (..., C_in)  w: (C_in, C_out)  b: (C_out,) or None.  Returns (..., C_out).
    (torch's nn.Linear stores W^T; the interop module transposes at the boundary.)  w may be a stored weight
    (core.weights.StoredWeight: quantized, narrow floats, a file's blocks, a rank's shard), whose ``x @ w`` runs
    its own product — dequantizing, or a collective.
    """
    check_float("x", x)
    if w.ndim != 2:
        raise ValueError(f"w must be a (C_in, C_out) matrix, got shape {tuple(w.shape)}")
    check_last_dim("x", x, w.shape[0], what=f"last dim (= w.shape[0] = {w.shape[0]})")
    if b is not None and tuple(b.shape) != (w.shape[1],):
        raise ValueError(f"b must have shape (C_out,) = ({w.shape[1]},), got {tuple(b.shape)}")
    xp = array_namespace(x)
    lead = tuple(x.shape[:-1])
    # one (N, C_in) @ (C_in, C_out) product for all leading dims: a batched x @ w would run one small
    # matrix product per batch row
    x2 = xp.reshape(x, (-1, x.shape[-1]))
    if fast.few_rows(x2, w):  # NumPy float32, 2 … 8 rows (a verification pass): W block by block, not packed whole
        y = xp.reshape(fast.few_rows_matmul(x2, w), (*lead, w.shape[1]))
    else:
        y = xp.reshape(x2 @ w, (*lead, w.shape[1]))  # (..., C_out)
    if b is not None:
        y += b  # in place: y is our own fresh array
    return y


def linear_backward(dy, x, w, has_bias=True):
    r"""Gradients of y = x W + b for an upstream dy (..., C_out):
    dx = dy W^T,  dW = \sum_{rows} x^T dy,  db = \sum_{rows} dy.   Returns (dx, dw, db or None)."""
    xp = array_namespace(dy)
    x2 = xp.reshape(x, (-1, x.shape[-1]))  # (N, C_in)
    dy2 = xp.reshape(dy, (-1, dy.shape[-1]))  # (N, C_out)
    dx = xp.reshape(dy2 @ w.mT, x.shape)  # forward: y = x @ w, so dx = dy @ w^T
    dw = x2.mT @ dy2  # (C_in, C_out)
    db = xp.sum(dy2, axis=0) if has_bias else None  # forward: y += b, broadcast over rows
    return dx, dw, db


def relu(x):
    r"""ReLU(x) = max(0, x)"""
    check_float("x", x)
    xp = array_namespace(x)
    return xp.maximum(x, xp.zeros((), dtype=x.dtype, device=device(x)))


def gelu(x):
    r"""GELU(x) = x \Phi(x) = \tfrac{x}{2} (1 + \mathrm{erf}(x / \sqrt{2}))   (exact form, not the tanh one)"""
    check_float("x", x)
    if fast.applies(x):  # NumPy float32: the same operations in one pass per cache-sized piece
        return fast.gelu(x)
    xp = array_namespace(x)
    phi = xp.astype(erf(x * (1.0 / math.sqrt(2.0))), x.dtype)  # erf(x/√2) in x's dtype (scipy widens float16)
    phi += 1.0
    phi *= x
    phi *= 0.5
    return phi  # x/2 (1 + erf(x / sqrt 2))


def gelu_tanh(x):
    r"""GELU(x) \approx \tfrac{x}{2} \big(1 + \tanh(\sqrt{2/\pi}\,(x + 0.044715\,x^3))\big)   (the tanh form: GPT-2's,
    and Gemma's gated feed-forward's, torch's ``gelu(x, approximate="tanh")``)

    Computed as x σ(2z), z = √(2/π)(x + 0.044715 x³) — the same function, since 1 + tanh z = 2σ(2z) — with
    σ(2z) = 1/(1 + e) for z ≥ 0 and e/(1 + e) below, e = e^{-2|z|}: 1 + tanh z itself loses every digit to
    cancellation where tanh z is near −1 (x ≈ −4 in float32: 1e-4 relative error), and e never overflows."""
    check_float("x", x)
    xp = array_namespace(x)
    z = x * x
    z *= 0.044715
    z += 1.0
    z *= x
    z *= 2.0 * math.sqrt(2.0 / math.pi)  # 2z
    e = xp.exp(-xp.abs(z))
    sigma = xp.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))  # σ(2z)
    return x * sigma


def relu_backward(dy, x):
    r"""d ReLU(x)/dx = 1 where x > 0, else 0 (the subgradient 0 at x = 0, as torch)."""
    xp = array_namespace(dy)
    return xp.where(x > 0, dy, xp.zeros_like(dy))


def gelu_backward(dy, x):
    r"""d/dx [x \Phi(x)] = \Phi(x) + x \varphi(x),  \varphi(x) = e^{-x^2/2} / \sqrt{2\pi}."""
    xp = array_namespace(dy)
    cdf = 0.5 * (1.0 + erf(x * (1.0 / math.sqrt(2.0))))
    pdf = xp.exp(-0.5 * x * x) * (1.0 / math.sqrt(2.0 * math.pi))
    return dy * (cdf + x * pdf)


def activation_fn(name):
    check_choice("activation", name, ACTIVATIONS)
    return relu if name == "relu" else gelu


def activation_backward(name):
    check_choice("activation", name, ACTIVATIONS)
    return relu_backward if name == "relu" else gelu_backward


def softmax(x, axis=-1, mask=None, overwrite_x=False):
    r"""softmax(x)_i = e^{x_i - m} / \sum_j e^{x_j - m},  m = \max_j x_j   (stable: same value for any m)

    mask: optional bool array broadcastable to x, True where an entry takes part.  Masked entries get
    exactly 0; a row with every entry masked — or every entry -inf — gets all zeros (not NaN, unlike torch).
    A NaN in a row makes that row NaN: it is never mistaken for a masked row.
    overwrite_x: x's memory may hold the result (SciPy's convention): for a caller whose x is a temporary of
    its own, such as attention's scores — one large array fewer to allocate.  x's contents are then undefined.
    """
    check_float("x", x)
    if axis in (-1, x.ndim - 1) and fast.applies(x):  # NumPy float32: the same operations in blocks of rows
        return fast.softmax(x, mask, overwrite_x)
    xp = array_namespace(x)
    if mask is not None:
        x = xp.where(mask, x, -xp.inf)
    m = xp.max(x, axis=axis, keepdims=True)
    m = xp.where(m == -xp.inf, xp.zeros_like(m), m)  # a row of -inf only (masked): any finite shift works
    e = xp.exp(x - m)  # masked entries: exp(-inf) = 0
    s = xp.sum(e, axis=axis, keepdims=True)
    s = xp.where(s == 0, xp.ones_like(s), s)  # a row of -inf only: 0 / 1 = 0, not NaN; a NaN stays NaN
    e /= s  # in place: e is our own fresh array
    return e


def softmax_backward(dy, y, axis=-1):
    r"""Given y = softmax(x): dx_i = y_i (dy_i - \sum_j dy_j y_j).  Masked entries (y = 0) get dx = 0."""
    xp = array_namespace(dy)
    return y * (dy - xp.sum(dy * y, axis=axis, keepdims=True))


def log_softmax(x, axis=-1):
    r"""\log softmax(x)_i = x_i - m - \log \sum_j e^{x_j - m}"""
    check_float("x", x)
    xp = array_namespace(x)
    z = x - xp.max(x, axis=axis, keepdims=True)
    return z - xp.log(xp.sum(xp.exp(z), axis=axis, keepdims=True))


def cross_entropy_forward(logits, targets, label_smoothing=0.0, ignore_index=None):
    r"""L = -\frac{1}{N} \sum_{t \ne ignored} \sum_v q_{t,v} \log softmax(z_t)_v,
    q_t = (1 - \varepsilon)\,\mathrm{onehot}(y_t) + \varepsilon / V   (label smoothing ε, paper §5.4).

    logits: (..., V); targets: int (...), positions equal to ignore_index (padding) do not count; N is the
    number of counted positions.  Returns (loss, cache for the backward)."""
    check_float("logits", logits)
    xp = array_namespace(logits)
    V = logits.shape[-1]
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must lie in [0, 1), got {label_smoothing}")
    z = xp.reshape(logits, (-1, V))  # (N, V)
    y = xp.reshape(targets, (-1,))  # (N,)
    keep = xp.ones(y.shape, dtype=xp.bool, device=device(y)) if ignore_index is None else y != ignore_index
    safe = xp.where(keep, y, xp.zeros_like(y))
    if int(xp.min(safe)) < 0 or int(xp.max(safe)) >= V:
        raise ValueError(f"targets must lie in [0, {V}) (or equal ignore_index), got values in "
                         f"[{int(xp.min(safe))}, {int(xp.max(safe))}]")
    q = xp.astype(safe[:, None] == xp.arange(V, device=device(y))[None, :], z.dtype)  # (N, V) one-hot
    q = q * (1.0 - label_smoothing) + label_smoothing / V
    logp = log_softmax(z)  # (N, V)
    w = xp.astype(keep, z.dtype)  # (N,)
    n = xp.clip(xp.sum(w), min=1.0)
    qlogp = q * xp.where(q > 0, logp, xp.zeros_like(logp))  # 0 · log 0 = 0: a -inf logit of weight 0 adds 0
    loss = -xp.sum(xp.sum(qlogp, axis=-1) * w) / n
    return loss, (logp, q, w, n, logits.shape)


def cross_entropy_backward(cache):
    """forward: L = -Σ_t w_t Σ_v q_tv log p_tv / N, so dL/dz_t = w_t (p_t - q_t) / N (p sums to 1)."""
    logp, q, w, n, shape = cache
    xp = array_namespace(logp)
    return xp.reshape((xp.exp(logp) - q) * (w[:, None] / n), shape)


def smoothed_target_entropy(n_classes, label_smoothing):
    r"""H(q) = -\sum_v q_v \log q_v of the label-smoothed target q = (1 - ε) onehot(y) + ε/V: the lowest
    cross-entropy a model can reach on such targets (its prediction would have to equal q), in nats.

    = -(1 - ε + ε/V) \log(1 - ε + ε/V) - (V - 1)(ε/V) \log(ε/V);  0 when ε = 0."""
    V = check_positive_int("n_classes", n_classes)
    eps = check_real("label_smoothing", label_smoothing, low=0.0, high=1.0, high_open=True)
    if eps == 0.0:
        return 0.0
    hit, miss = 1.0 - eps + eps / V, eps / V
    return float(-hit * math.log(hit) - (V - 1) * miss * math.log(miss))


def layer_norm(x, gamma, beta, eps=1e-5):
    r"""LN(x) = \gamma \odot (x - \mu) / \sqrt{\sigma^2 + \epsilon} + \beta over the last axis,
    with the biased variance \sigma^2 = \tfrac{1}{C}\sum_c (x_c - \mu)^2 and \epsilon inside the root
    (as torch's nn.LayerNorm and BERT).

    x: (..., C)  gamma, beta: (C,)
    """
    return layer_norm_forward(x, gamma, beta, eps)[0]


def layer_norm_forward(x, gamma, beta, eps=1e-5):
    """layer_norm, also returning the cache its backward needs: (out, (x_hat, rstd, gamma))."""
    check_float("x", x)
    check_last_dim("x", x, gamma.shape[0], what=f"last dim (= gamma size {gamma.shape[0]})")
    if fast.applies(x, gamma, beta):  # NumPy float32: the same operations in blocks of rows
        out, x_hat, rstd = fast.layer_norm(x, gamma, beta, eps)
        return out, (x_hat, rstd, gamma)
    xp = array_namespace(x)
    mu = xp.mean(x, axis=-1, keepdims=True)  # (..., 1)
    xc = x - mu  # (..., C)
    var = xp.mean(xc * xc, axis=-1, keepdims=True)  # (..., 1) biased
    rstd = 1.0 / xp.sqrt(var + eps)  # (..., 1)
    x_hat = xc * rstd  # (..., C)
    return x_hat * gamma + beta, (x_hat, rstd, gamma)


def layer_norm_backward(dy, cache):
    r"""forward: out = x_hat γ + β with x_hat = (x - μ) rstd.  So dβ = Σ dy, dγ = Σ dy x_hat, and with
    g = dy γ:  dx = rstd (g - mean(g) - x_hat mean(g x_hat))  (means over the C features).
    Returns (dx, dgamma, dbeta)."""
    x_hat, rstd, gamma = cache
    xp = array_namespace(dy)
    rows = tuple(range(dy.ndim - 1))
    dbeta = xp.sum(dy, axis=rows)  # (C,)
    dgamma = xp.sum(dy * x_hat, axis=rows)  # (C,)
    g = dy * gamma  # (..., C): gradient with respect to x_hat
    dx = rstd * (g - xp.mean(g, axis=-1, keepdims=True) - x_hat * xp.mean(g * x_hat, axis=-1, keepdims=True))
    return dx, dgamma, dbeta


def rms_norm(x, gamma, eps=1e-6):
    r"""RMSNorm(x) = \gamma \odot x / \sqrt{\tfrac{1}{C}\sum_c x_c^2 + \epsilon}   (Zhang & Sennrich 2019; Llama)

    Layer norm without the mean and the shift: x is only rescaled.  x: (..., C)  gamma: (C,)."""
    return rms_norm_forward(x, gamma, eps)[0]


def rms_norm_forward(x, gamma, eps=1e-6):
    """rms_norm, also returning its backward's cache: (out, (x_hat, rstd, gamma))."""
    check_float("x", x)
    check_last_dim("x", x, gamma.shape[0], what=f"last dim (= gamma size {gamma.shape[0]})")
    if fast.applies(x, gamma):  # NumPy float32: the same operations in blocks of rows
        out, x_hat, rstd = fast.rms_norm(x, gamma, eps)
        return out, (x_hat, rstd, gamma)
    xp = array_namespace(x)
    rstd = 1.0 / xp.sqrt(xp.mean(x * x, axis=-1, keepdims=True) + eps)  # (..., 1)
    x_hat = x * rstd  # (..., C)
    return x_hat * gamma, (x_hat, rstd, gamma)


def rms_norm_backward(dy, cache):
    r"""forward: out = x_hat γ, x_hat = x rstd.  dγ = Σ dy x_hat; with g = dy γ,
    dx = rstd (g - x_hat mean(g x_hat)).  Returns (dx, dgamma)."""
    x_hat, rstd, gamma = cache
    xp = array_namespace(dy)
    dgamma = xp.sum(dy * x_hat, axis=tuple(range(dy.ndim - 1)))  # (C,)
    g = dy * gamma
    return rstd * (g - x_hat * xp.mean(g * x_hat, axis=-1, keepdims=True)), dgamma


def silu(x):
    r"""SiLU(x) = x \sigma(x) = x / (1 + e^{-x})   (also called swish)"""
    check_float("x", x)
    if fast.applies(x):  # NumPy float32: the same operations in place per cache-sized piece
        return fast.silu(x)
    xp = array_namespace(x)
    return x / (1.0 + xp.exp(-x))


def silu_backward(dy, x):
    r"""d/dx [x σ(x)] = σ(x) (1 + x (1 - σ(x)))"""
    xp = array_namespace(dy)
    s = 1.0 / (1.0 + xp.exp(-x))
    return dy * s * (1.0 + x * (1.0 - s))


def swiglu(x, w_gate, w_up, w_down):
    r"""FFN_SwiGLU(x) = (SiLU(x W_g) \odot x W_u) W_d   (Shazeer 2020; Llama's feed-forward network, no biases)

    x: (..., C)  w_gate, w_up: (C, F)  w_down: (F, C).  Returns (..., C)."""
    return swiglu_forward(x, w_gate, w_up, w_down)[0]


def geglu(x, w_gate, w_up, w_down):
    r"""FFN_GeGLU(x) = (GELU_tanh(x W_g) \odot x W_u) W_d   (Shazeer 2020; Gemma's feed-forward network, no biases)

    x: (..., C)  w_gate, w_up: (C, F)  w_down: (F, C).  Returns (..., C)."""
    h = gelu_tanh(linear(x, w_gate))  # (..., F)
    h *= linear(x, w_up)
    return linear(h, w_down)


def swiglu_forward(x, w_gate, w_up, w_down):
    """swiglu, also returning its backward's cache."""
    a = linear(x, w_gate)  # (..., F) gate pre-activation
    u = linear(x, w_up)  # (..., F)
    if fast.applies(a, u) and a.shape == u.shape:  # NumPy float32: SiLU(a) ⊙ u in one pass
        h = fast.silu_mul(a, u)
    else:
        h = silu(a) * u  # (..., F)
    return linear(h, w_down), (x, a, u, h)


def swiglu_backward(dy, cache, w_gate, w_up, w_down):
    """The forward's lines in reverse.  Returns (dx, {"w_gate", "w_up", "w_down"} gradients)."""
    x, a, u, h = cache
    dh, dw_down, _ = linear_backward(dy, h, w_down, has_bias=False)  # forward: out = h W_d
    du = dh * silu(a)  # forward: h = silu(a) * u
    da = silu_backward(dh * u, a)
    dx_u, dw_up, _ = linear_backward(du, x, w_up, has_bias=False)
    dx_g, dw_gate, _ = linear_backward(da, x, w_gate, has_bias=False)
    return dx_u + dx_g, {"w_gate": dw_gate, "w_up": dw_up, "w_down": dw_down}  # x fed both branches


def dropout_forward(x, rate, rng):
    r"""Dropout (training only): y = x \odot m / (1 - p), m_i \sim Bernoulli(1 - p), from a np.random.Generator.
    rate 0 or rng None: the identity.  Returns (y, cache = the scaled mask or None)."""
    if not rate or rng is None:
        return x, None
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout rate must lie in [0, 1), got {rate}")
    xp = array_namespace(x)
    scale = xp.astype(keep_mask(rng, x.shape, 1.0 - rate, like=x), x.dtype) * (1.0 / (1.0 - rate))
    return x * scale, scale


def dropout_backward(dy, cache):
    """forward: y = x * scale, so dx = dy * scale (the identity when dropout was off)."""
    return dy if cache is None else dy * cache


def residual(x, fx):
    r"""Residual(x) = x + f(x)   (the source document's §4.3; f(x) is a sublayer's output)"""
    if tuple(x.shape) != tuple(fx.shape):
        raise ValueError(f"residual needs x and f(x) of one shape, got {tuple(x.shape)} and {tuple(fx.shape)}")
    return x + fx


def residual_backward(dy):
    r"""forward: y = x + f(x), so the gradient reaches both terms unchanged: (dx, df) = (dy, dy).  (The
    layers' backward passes add the two paths on one commented line each.)"""
    return dy, dy


def mean_pool(h, keep):
    r"""e = \sum_t m_t h_t / \sum_t m_t: the mean of the token vectors h (B, T, C) over the tokens where
    keep (B, T) is true (not padding).  A row with no token kept gives 0.  Returns (B, C)."""
    return mean_pool_forward(h, keep)[0]


def mean_pool_forward(h, keep):
    """mean_pool, also returning its backward's cache: the weights w_t = m_t / n (B, T, 1)."""
    xp = array_namespace(h)
    m = xp.astype(keep, h.dtype)  # (B, T)
    weights = (m / xp.clip(xp.sum(m, axis=1, keepdims=True), min=1.0))[..., None]  # (B, T, 1)
    return xp.sum(h * weights, axis=1), weights  # (B, C)


def mean_pool_backward(de, weights):
    """forward: e = Σ_t w_t h_t, so dh_t = w_t de.  de: (B, C) -> dh: (B, T, C)."""
    return de[:, None, :] * weights


def feed_forward(x, w1, b1, w2, b2, activation="relu"):
    r"""FFN(x) = act(x W_1 + b_1) W_2 + b_2   (paper eq. 2, with act = ReLU; GELU optional)

    x: (..., C)  w1: (C, F)  w2: (F, C)
    """
    return feed_forward_forward(x, w1, b1, w2, b2, activation)[0]


def feed_forward_forward(x, w1, b1, w2, b2, activation="relu"):
    """feed_forward, also returning the cache of its backward: (out, (x, pre-activation, hidden))."""
    a = linear(x, w1, b1)  # (..., F) pre-activation
    h = activation_fn(activation)(a)  # (..., F)
    return linear(h, w2, b2), (x, a, h)  # (..., C)


def feed_forward_backward(dy, cache, w1, b1, w2, b2, activation="relu"):
    """The forward's three lines in reverse.  Returns (dx, {"w1", "b1", "w2", "b2"} gradients)."""
    x, a, h = cache
    dh, dw2, db2 = linear_backward(dy, h, w2, b2 is not None)  # forward: out = linear(h, w2, b2)
    da = activation_backward(activation)(dh, a)  # forward: h = act(a)
    dx, dw1, db1 = linear_backward(da, x, w1, b1 is not None)  # forward: a = linear(x, w1, b1)
    return dx, {"w1": dw1, "b1": db1, "w2": dw2, "b2": db2}
