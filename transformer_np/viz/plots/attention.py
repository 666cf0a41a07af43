"""Chapters 2–3: softmax saturation, the cost of attention against recurrence and convolution, attention
weights, masks, and the per-head grid."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ...core.backend import to_numpy
from ...core.nn import softmax
from .base import heatmap, plain_log_ticks


def softmax_saturation(d_ks=(4, 16, 64, 256, 1024), n_keys=32, n_trials=400, seed=0):
    """Why divide by sqrt(d_k), for random q·k scores with and without scaling.  Left: the largest softmax weight
    (saturation towards one-hot); right: the size of softmax's gradient, ‖∂p/∂s‖_F of its Jacobian
    diag(p) − p pᵀ — what reaches the scores in training, vanishing as softmax saturates."""
    rng = np.random.default_rng(seed)
    largest, grad = {"unscaled": [], "scaled": []}, {"unscaled": [], "scaled": []}
    for d in d_ks:
        q = rng.standard_normal((n_trials, 1, d))
        k = rng.standard_normal((n_trials, n_keys, d))
        s = (q @ np.swapaxes(k, -1, -2))[:, 0]  # (trials, keys): variance d
        for name, scores in (("unscaled", s), ("scaled", s / np.sqrt(d))):
            p = softmax(scores)
            jacobian = p[:, :, None] * np.eye(n_keys) - p[:, :, None] * p[:, None, :]  # (trials, keys, keys)
            largest[name].append(p.max(-1).mean())
            grad[name].append(np.linalg.norm(jacobian, axis=(1, 2)).mean())
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
    for a, values, ylabel in ((ax, largest, "mean of the largest weight"),
                              (ax2, grad, "mean ‖diag(p) − p pᵀ‖_F")):
        a.plot(d_ks, values["unscaled"], "o-", label="softmax(q·k)")
        a.plot(d_ks, values["scaled"], "s-", label="softmax(q·k / √d_k)")
        a.set_xscale("log", base=2)
        plain_log_ticks(a.xaxis)
        a.set_xlabel("d_k (q, k with unit-variance entries)")
        a.set_ylabel(ylabel)
        a.legend(fontsize=8)
    ax.axhline(1 / n_keys, color="gray", ls=":", label=f"uniform (1/{n_keys})")
    ax.legend(fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_title(f"Unscaled scores saturate softmax towards one-hot ({n_keys} keys)", fontsize=10)
    ax2.set_ylim(0, None)
    ax2.set_title("…and its gradient vanishes; scaled, both stay put", fontsize=10)
    return fig


def layer_costs(lengths, times, path_lengths, d):
    """The paper's Table 1, measured: seconds per layer against n (log-log, left) and the maximum path length
    against n (right); ``times`` and ``path_lengths`` map a layer name to one value per length."""
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    n = np.asarray(lengths, dtype=float)
    for i, (kind, t) in enumerate(times.items()):
        ax.plot(n, np.asarray(t) * 1e3, "o-", color=f"C{i}", label=kind)
    for slope, name in ((1, "∝ n"), (2, "∝ n²")):
        ax.plot(n, times["self-attention"][-1] * 1e3 * (n / n[-1]) ** slope, ":", color="grey", lw=0.8)
        ax.text(n[0], times["self-attention"][-1] * 1e3 * (n[0] / n[-1]) ** slope, name, fontsize=7, color="grey")
    ax.set_xscale("log")
    ax.set_yscale("log")
    plain_log_ticks(ax.xaxis)
    plain_log_ticks(ax.yaxis)
    ax.set_xlabel("sequence length n")
    ax.set_ylabel("ms per layer (one sequence, float32)")
    ax.set_title(f"Time per layer, d = {d}, measured")
    ax.legend(fontsize=8)
    for i, (kind, p) in enumerate(path_lengths.items()):  # dashed and hollow: lines that may lie on another
        ax2.plot(n, p, "o-" if i % 2 == 0 else "s--", color=f"C{i}", mfc="none" if i % 2 else f"C{i}", label=kind,
                 zorder=3 if i % 2 else 2)
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    plain_log_ticks(ax2.xaxis)
    plain_log_ticks(ax2.yaxis)
    ax2.set_xlabel("sequence length n")
    ax2.set_ylabel("edges from position 0 to n − 1")
    ax2.set_title("Maximum path length, counted on each layer's graph")
    ax2.legend(fontsize=8)
    return fig


def attention_kinds_cost(d_ks, times, nbytes, n):
    """Additive vs dot-product attention at n queries and keys: measured seconds and the bytes of the largest
    intermediate array, against d_k (``times``/``nbytes``: {name: one value per d_k})."""
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
    for i, name in enumerate(times):
        ax.plot(d_ks, np.asarray(times[name]) * 1e3, "o-", color=f"C{i}", label=name)
        ax2.plot(d_ks, np.asarray(nbytes[name]) / 2**20, "o-", color=f"C{i}", label=name)
    for a, ylabel, title in ((ax, "ms", f"Time, n = {n} queries and keys"),
                             (ax2, "MiB", "Largest intermediate array")):
        a.set_xscale("log", base=2)
        a.set_yscale("log")
        plain_log_ticks(a.xaxis)
        plain_log_ticks(a.yaxis)
        a.set_xlabel("d_k (= hidden size A of the additive score)")
        a.set_ylabel(ylabel)
        a.set_title(title)
        a.legend(fontsize=8)
    return fig


def attention_weights(weights, queries, keys, title="Attention weights"):
    """One (T, S) weight matrix with token labels."""
    fig, ax = plt.subplots(figsize=(1.0 + 0.5 * len(keys), 0.8 + 0.45 * len(queries)), layout="constrained")
    heatmap(ax, weights, title=title, xlabel="key s", ylabel="query t", xticks=keys, yticks=queries,
            vmin=0, vmax=1, annotate=len(keys) <= 10)
    return fig


def masks(named_masks):
    """Boolean masks side by side: True (may attend) is dark."""
    n = len(named_masks)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.2), layout="constrained", squeeze=False)
    for ax, (name, m) in zip(axes[0], named_masks.items()):
        heatmap(ax, to_numpy(m).astype(float), title=name, xlabel="key s", ylabel="query t", cmap="Greys",
                vmin=0, vmax=1, colorbar=False)
    fig.suptitle("Masks: dark = query t may attend to key s")
    return fig


def head_grid(weights, queries=None, keys=None, title="Per-head attention weights"):
    """(H, T, S) or (L, H, T, S) weights as a grid: one panel per head (and layer)."""
    w = to_numpy(weights)
    if w.ndim == 3:
        w = w[None]
    L, H = w.shape[:2]
    fig, axes = plt.subplots(L, H, figsize=(3.0 * H + 1, 3.2 * L + 0.6), layout="constrained", squeeze=False)
    for li in range(L):
        for h in range(H):
            ax = axes[li, h]
            im = ax.imshow(w[li, h], vmin=0, vmax=1, cmap="viridis", interpolation="nearest")
            ax.set_title(f"layer {li} head {h}" if L > 1 else f"head {h}", fontsize=10)
            ax.set_xticks(range(len(keys)) if keys is not None else [],
                          keys if keys is not None else [], rotation=90, fontsize=9)
            ax.set_yticks(range(len(queries)) if queries is not None else [],
                          queries if queries is not None and h == 0 else [], fontsize=9)
            ax.set_xlabel("key", fontsize=9)
            if h == 0:
                ax.set_ylabel("query", fontsize=9)
    fig.colorbar(im, ax=axes, fraction=0.02, pad=0.02, label="weight")
    fig.suptitle(title)
    return fig
