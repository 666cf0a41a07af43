r"""The paper's Table 1, computed: self-attention against the recurrent and convolutional layers it replaced.

    layer type                complexity per layer   sequential operations   maximum path length
    self-attention            O(n²·d)                O(1)                    O(1)
    recurrent                 O(n·d²)                O(n)                    O(n)
    convolutional (kernel k)  O(k·n·d²)              O(1)                    O(log_k n) dilated, O(n/k) contiguous
    self-attention, window r  O(r·n·d)               O(1)                    O(n/r)

n is the sequence length, d the width.  Each layer below is one formula on (n, d) arrays (one sequence); the
path length is measured on each layer's connectivity, not asserted.
"""

from __future__ import annotations

import math

import numpy as np

from ..core.attention import scaled_dot_product_attention
from ..core.checks import check_positive_int
from ..efficient.cost_model import best_time

LAYERS = ("self-attention", "recurrent", "convolutional")


def self_attention_layer(x, w_q, w_k, w_v):
    r"""y = softmax((x W_q)(x W_k)^T / \sqrt{d}) (x W_v): every position reads every other in one step.  x (n, d)."""
    return scaled_dot_product_attention(x @ w_q, x @ w_k, x @ w_v)[0]


def recurrent_layer(x, w_h, w_x, b):
    r"""h_t = \tanh(h_{t-1} W_h + x_t W_x + b), h_{-1} = 0 (an Elman RNN).  x (n, d) -> h (n, d).

    The input projection x W_x is one matmul; the recurrence is n dependent steps that no batching removes:
    the O(n) sequential operations of Table 1."""
    xw = x @ w_x + b  # (n, d): everything that does not depend on h
    h = np.zeros((x.shape[0] + 1, w_h.shape[0]), dtype=x.dtype)  # row 0: h_{-1}
    for t in range(x.shape[0]):
        h[t + 1] = np.tanh(h[t] @ w_h + xw[t])
    return h[1:]


def convolutional_layer(x, w, b):
    r"""y_t = \sum_{j=0}^{k-1} x_{t+j-\lfloor k/2 \rfloor} W_j + b, zero-padded ("same" length).  x (n, d),
    w (k, d, d) -> (n, d): k matmuls of (n, d)·(d, d), the O(k·n·d²) of Table 1."""
    k, n = w.shape[0], x.shape[0]
    pad = np.zeros((k // 2, x.shape[1]), dtype=x.dtype)
    xp = np.concatenate([pad, x, np.zeros((k - 1 - k // 2, x.shape[1]), dtype=x.dtype)])  # (n + k - 1, d)
    return sum(xp[j:j + n] @ w[j] for j in range(k)) + b


def one_hop(kind, n, k=3, r=None):
    """(n, n) bool: A[t, s] True when output t of one layer reads input s directly (one edge of the graph).
    For the recurrent layer the edges are those of one time step: x_t and h_{t-1} into h_t."""
    i, j = np.arange(n)[:, None], np.arange(n)[None, :]
    if kind == "self-attention":
        return np.ones((n, n), bool) if r is None else np.abs(i - j) <= r
    if kind == "recurrent":
        return (i == j) | (i == j + 1)
    if kind == "convolutional":
        return (j - i >= -(k // 2)) & (j - i <= k - 1 - k // 2)
    raise ValueError(f"kind must be one of {LAYERS}, got {kind!r}")


def path_length(kind, n, k=3, r=None):
    """The fewest edges a signal crosses from input position 0 to output position n - 1: breadth-first search
    on one_hop, one matrix-vector product per edge (the set of positions reached so far)."""
    check_positive_int("n", n)
    hop = one_hop(kind, n, k, r).astype(np.float32)
    reached, steps = np.eye(n, dtype=np.float32)[0], 0  # start: input position 0
    while not reached[n - 1]:
        reached = (hop @ reached > 0).astype(np.float32)
        steps += 1
    return steps


def flops(kind, n, d, k=3):
    """Multiply-adds ×2 of one layer on one sequence, projections included (the rows of Table 1 keep only the
    leading term)."""
    if kind == "self-attention":
        return 2 * 3 * n * d * d + 2 * 2 * n * n * d  # q, k, v projections + QKᵀ and weights·V
    if kind == "recurrent":
        return 2 * 2 * n * d * d  # x W_x and h W_h
    if kind == "convolutional":
        return 2 * k * n * d * d
    raise ValueError(f"kind must be one of {LAYERS}, got {kind!r}")


def layer_weights(d, k=3, seed=0):
    """Random weights of the three layers at width d, scaled 1/sqrt(d) (float32)."""
    rng = np.random.default_rng(seed)
    m = lambda *shape: (rng.standard_normal(shape) / math.sqrt(d)).astype(np.float32)  # noqa: E731
    return {"self-attention": (m(d, d), m(d, d), m(d, d)), "recurrent": (m(d, d), m(d, d), np.zeros(d, np.float32)),
            "convolutional": (m(k, d, d), np.zeros(d, np.float32))}


LAYER_FUNCTIONS = {"self-attention": self_attention_layer, "recurrent": recurrent_layer,
                   "convolutional": convolutional_layer}


def time_layers(lengths, d, k=3, repeat=3, seed=0):
    """{kind: [best-of-repeat seconds (after a warm-up run) of one layer on one (n, d) float32 sequence, for n in
    lengths]}."""
    weights = layer_weights(d, k, seed)
    x_all = np.random.default_rng(seed + 1).standard_normal((max(lengths), d)).astype(np.float32)
    times = {kind: [] for kind in LAYERS}
    for n in lengths:
        for kind in LAYERS:
            times[kind].append(best_time(lambda kind=kind, n=n: LAYER_FUNCTIONS[kind](x_all[:n], *weights[kind]),
                                         repeat))
    return times
