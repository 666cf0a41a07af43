r"""Loop-level versions of every formula, written straight from the equations.

Slow on purpose: explicit sums over positions, dimensions and heads, Python floats, float64.  They are
the first of the three checks each vectorised function gets (tests/ and ``python -m transformer_np tour``
compare the two).  Single sequences only: x is (T, C); batch loops live in the callers.
"""

from __future__ import annotations

import math

import numpy as np


def loop_linear(x, w, b=None):
    """y[t, j] = sum_i x[t, i] w[i, j] + b[j]"""
    T, Cin = x.shape
    Cout = w.shape[1]
    y = np.zeros((T, Cout))
    for t in range(T):
        for j in range(Cout):
            acc = 0.0 if b is None else float(b[j])
            for i in range(Cin):
                acc += float(x[t, i]) * float(w[i, j])
            y[t, j] = acc
    return y


def loop_relu(x):
    return np.vectorize(lambda v: v if v > 0 else 0.0, otypes=[float])(x)


def loop_gelu(x):
    """x/2 (1 + erf(x / sqrt 2)), with math.erf"""
    return np.vectorize(lambda v: 0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0))), otypes=[float])(x)


def loop_softmax(row, mask=None):
    """softmax over one row: e^{x_i} / sum_j e^{x_j}, written without the max shift (float64, small rows);
    masked entries (mask False) get 0, and a fully masked row is all zeros."""
    keep = [True] * len(row) if mask is None else [bool(m) for m in mask]
    e = [math.exp(float(v)) if k else 0.0 for v, k in zip(row, keep)]
    s = sum(e)
    return np.array([v / s if s > 0 else 0.0 for v in e])


def loop_layer_norm(x, gamma, beta, eps):
    """per row: mu = mean, var = mean((x - mu)^2), y = gamma (x - mu) / sqrt(var + eps) + beta"""
    T, C = x.shape
    y = np.zeros((T, C))
    for t in range(T):
        mu = sum(float(x[t, c]) for c in range(C)) / C
        var = sum((float(x[t, c]) - mu) ** 2 for c in range(C)) / C
        for c in range(C):
            y[t, c] = float(gamma[c]) * (float(x[t, c]) - mu) / math.sqrt(var + eps) + float(beta[c])
    return y


def loop_feed_forward(x, w1, b1, w2, b2, activation="relu"):
    act = loop_relu if activation == "relu" else loop_gelu
    return loop_linear(act(loop_linear(x, w1, b1)), w2, b2)


def loop_positional_encoding(max_len, d_model):
    """PE[pos, 2i] = sin(pos / 10000^(2i/d)), PE[pos, 2i+1] = cos(pos / 10000^(2i/d))"""
    pe = np.zeros((max_len, d_model))
    for pos in range(max_len):
        for j in range(d_model):
            i2 = j - j % 2  # the even index 2i shared by the (sin, cos) pair
            angle = pos / 10000.0 ** (i2 / d_model)
            pe[pos, j] = math.sin(angle) if j % 2 == 0 else math.cos(angle)
    return pe


def loop_token_embedding(ids, table, scale=True):
    """E[id] * sqrt(C) for each id of a 1-D sequence"""
    C = table.shape[1]
    return np.array([[float(table[i, c]) * (math.sqrt(C) if scale else 1.0) for c in range(C)] for i in ids])


def loop_attention(q, k, v, mask=None):
    """out[t] = sum_s w[t, s] v[s],  w[t] = softmax_s(q[t] . k[s] / sqrt(D)).  q (T, D), k (S, D), v (S, Dv)."""
    T, D = q.shape
    S, Dv = v.shape
    w = np.zeros((T, S))
    out = np.zeros((T, Dv))
    for t in range(T):
        scores = [sum(float(q[t, d]) * float(k[s, d]) for d in range(D)) / math.sqrt(D) for s in range(S)]
        w[t] = loop_softmax(scores, None if mask is None else mask[t])
        for j in range(Dv):
            out[t, j] = sum(w[t, s] * float(v[s, j]) for s in range(S))
    return out, w


def loop_additive_attention(q, k, v, w_q, w_k, v_a, mask=None):
    """w[t] = softmax_s(sum_a v_a[a] tanh(sum_i q[t, i] w_q[i, a] + sum_j k[s, j] w_k[j, a])),
    out[t] = sum_s w[t, s] v[s].  q (T, Dq), k (S, Dk), v (S, Dv)."""
    T, S, A = q.shape[0], k.shape[0], v_a.shape[0]
    w = np.zeros((T, S))
    for t in range(T):
        scores = []
        for s in range(S):
            pre = [sum(float(q[t, i]) * float(w_q[i, a]) for i in range(q.shape[1]))
                   + sum(float(k[s, j]) * float(w_k[j, a]) for j in range(k.shape[1])) for a in range(A)]
            scores.append(sum(float(v_a[a]) * math.tanh(pre[a]) for a in range(A)))
        w[t] = loop_softmax(scores, None if mask is None else mask[t])
    out = np.array([[sum(w[t, s] * float(v[s, j]) for s in range(S)) for j in range(v.shape[1])] for t in range(T)])
    return out, w


def loop_multi_head_attention(x_q, x_kv, p, n_heads, mask=None):
    """Concat(head_1..head_H) W^O + b_O with head_h = Attention(x_q W^Q_h, x_kv W^K_h, x_kv W^V_h),
    one head at a time.  x_q (T, C), x_kv (S, C), mask (T, S).  Returns (out (T, C), weights (H, T, S))."""
    C = p["w_q"].shape[1]
    D = C // n_heads
    q = loop_linear(x_q, p["w_q"], p["b_q"])
    k = loop_linear(x_kv, p["w_k"], p["b_k"])
    v = loop_linear(x_kv, p["w_v"], p["b_v"])
    heads, weights = [], []
    for h in range(n_heads):
        cols = slice(h * D, (h + 1) * D)
        o, w = loop_attention(q[:, cols], k[:, cols], v[:, cols], mask)
        heads.append(o)
        weights.append(w)
    concat = np.concatenate(heads, axis=1)  # (T, C): head h in columns h*D .. (h+1)*D - 1
    return loop_linear(concat, p["w_o"], p["b_o"]), np.stack(weights)


def _sub(x, f, norm, cfg):
    """one sublayer, post-LN LN(x + f(x)) or pre-LN x + f(LN(x))"""
    ln = lambda z: loop_layer_norm(z, norm["gamma"], norm["beta"], cfg.layer_norm_eps)  # noqa: E731
    return x + f(ln(x)) if cfg.norm_first else ln(x + f(x))


def loop_encoder_layer(x, p, cfg, mask=None):
    """x (S, C), mask (S, S)"""
    x = _sub(x, lambda h: loop_multi_head_attention(h, h, p["self_attn"], cfg.n_heads, mask)[0], p["norm1"], cfg)
    return _sub(x, lambda h: loop_feed_forward(h, **p["ffn"], activation=cfg.activation), p["norm2"], cfg)


def loop_decoder_layer(y, memory, p, cfg, self_mask=None, cross_mask=None):
    """y (T, C), memory (S, C), self_mask (T, T), cross_mask (T, S)"""
    mha = loop_multi_head_attention
    y = _sub(y, lambda h: mha(h, h, p["self_attn"], cfg.n_heads, self_mask)[0], p["norm1"], cfg)
    y = _sub(y, lambda h: mha(h, memory, p["cross_attn"], cfg.n_heads, cross_mask)[0], p["norm2"], cfg)
    return _sub(y, lambda h: loop_feed_forward(h, **p["ffn"], activation=cfg.activation), p["norm3"], cfg)


# --- the formulas of a modern LLM (Llama): RMSNorm, SwiGLU, RoPE, grouped-query attention ---------------------
def loop_rms_norm(x, gamma, eps):
    """y[t, c] = gamma[c] x[t, c] / sqrt(mean_c' x[t, c']^2 + eps)"""
    T, C = x.shape
    y = np.zeros((T, C))
    for t in range(T):
        rms = math.sqrt(sum(float(x[t, c]) ** 2 for c in range(C)) / C + eps)
        for c in range(C):
            y[t, c] = float(gamma[c]) * float(x[t, c]) / rms
    return y


def loop_swiglu(x, w_gate, w_up, w_down):
    """(silu(x W_g) * x W_u) W_d, with silu(a) = a / (1 + e^-a), element by element"""
    a, u = loop_linear(x, w_gate), loop_linear(x, w_up)
    h = np.vectorize(lambda g, v: g / (1.0 + math.exp(-g)) * v, otypes=[float])(a, u)
    return loop_linear(h, w_down)


def loop_geglu(x, w_gate, w_up, w_down):
    """(gelu_tanh(x W_g) * x W_u) W_d, with gelu_tanh(a) = a/2 (1 + tanh(sqrt(2/pi) (a + 0.044715 a^3)))"""
    a, u = loop_linear(x, w_gate), loop_linear(x, w_up)
    c = math.sqrt(2.0 / math.pi)
    h = np.vectorize(lambda g, v: 0.5 * g * (1.0 + math.tanh(c * (g + 0.044715 * g ** 3))) * v, otypes=[float])(a, u)
    return loop_linear(h, w_down)


def loop_sliding_window_mask(T, S, window):
    """m[t][s] = True where key s is at or before query t's position t + S - T and fewer than window back"""
    return np.array([[t + S - T - window < s <= t + S - T for s in range(S)] for t in range(T)])


def loop_rope(x, positions, base, layout="pairs"):
    """Rotate each pair of features of x[t] (T, D) by the angle positions[t] * base^(-2i/D), one pair at a time.
    layout "pairs": (x[2i], x[2i+1]); "half": (x[i], x[i + D/2])."""
    T, D = x.shape
    y = np.array(x, dtype=float)
    for t in range(T):
        for i in range(D // 2):
            theta = float(positions[t]) * base ** (-2.0 * i / D)
            a, b = (2 * i, 2 * i + 1) if layout == "pairs" else (i, i + D // 2)
            y[t, a] = float(x[t, a]) * math.cos(theta) - float(x[t, b]) * math.sin(theta)
            y[t, b] = float(x[t, a]) * math.sin(theta) + float(x[t, b]) * math.cos(theta)
    return y


def loop_grouped_query_attention(q, k, v, mask=None):
    """q (H, T, D), k and v (H_kv, S, ·): query head h uses key/value head h // (H / H_kv), one head at a time.
    Returns (out (H, T, Dv), weights (H, T, S))."""
    H, H_kv = q.shape[0], k.shape[0]
    outs = [loop_attention(q[h], k[h // (H // H_kv)], v[h // (H // H_kv)], mask) for h in range(H)]
    return np.stack([o for o, _ in outs]), np.stack([w for _, w in outs])
