"""Chapter 11: making it smaller — rounding grids, quantization errors, activation outliers, sparsity
patterns, perplexity against bits and sparsity."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from ...core.backend import to_numpy
from ...efficient.compress import method_label
from .base import plain_log_ticks


def rounding_grid(values, step, bits, title):
    """Some weights (dots) and the symmetric grid s·q they are rounded to (lines), q = -q_max … q_max."""
    values = to_numpy(values)
    q_max = 2 ** (bits - 1) - 1
    fig, ax = plt.subplots(figsize=(9, 2.4), layout="constrained")
    for q in range(-q_max, q_max + 1):
        ax.axvline(q * step, color="grey", lw=0.5 if q else 1.0)
    rounded = np.clip(np.round(values / step), -q_max, q_max) * step
    ax.plot(values, np.full(values.shape, 0.6), "o", ms=4, label="weights x")
    ax.plot(rounded, np.full(values.shape, 0.3), "s", ms=4, color="C3", label="s · round(x / s)")
    for a, b in zip(values, rounded):
        ax.plot([a, b], [0.6, 0.3], color="C3", lw=0.5)
    ax.set_ylim(0, 0.9)
    ax.set_yticks([])
    ax.set_xlabel("value")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    return fig


def quantization_errors(w, named):
    """Left: the weights' histogram; right: the error x - deq(x) of each named scheme ({name: dequantized w})."""
    w = to_numpy(w).reshape(-1)
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 3.6), layout="constrained")
    ax.hist(w, bins=200, color="grey")
    ax.set_yscale("log")
    ax.set_xlabel("weight value")
    ax.set_ylabel("count")
    ax.set_title(f"The weights ({w.size:,}): max |x| = {np.abs(w).max():.3f}, std {w.std():.4f}", fontsize=10)
    lim = max(np.abs(to_numpy(d).reshape(-1) - w).max() for d in named.values())
    for i, (name, d) in enumerate(named.items()):
        err = to_numpy(d).reshape(-1) - w
        ax2.hist(err, bins=np.linspace(-lim, lim, 161), histtype="step", color=f"C{i}",
                 label=f"{name}: rms {np.sqrt(np.mean(err ** 2)):.2e}")
    ax2.set_yscale("log")
    ax2.set_xlabel("error deq(x) - x")
    ax2.set_title("Rounding error of each scheme", fontsize=10)
    ax2.legend(fontsize=7)
    return fig


def activation_outliers(per_layer, channel_absmax, layer_name):
    """Left: for each layer, max and median over input channels of max|X_j| (``per_layer``: {name: (L, 2)});
    right: max|X_j| of every channel j of one layer's input — the few outlier channels."""
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
    for i, (name, a) in enumerate(per_layer.items()):
        a = to_numpy(a)
        ax.plot(a[:, 0], "o-", color=f"C{i}", ms=3, label=f"{name}: largest channel")
        ax.plot(a[:, 1], "--", color=f"C{i}", lw=0.8, label=f"{name}: median channel")
    ax.set_yscale("log")
    plain_log_ticks(ax.yaxis)
    ax.set_xlabel("layer")
    ax.set_ylabel("max |x| over the calibration tokens")
    ax.set_title("Activation range of each layer's inputs", fontsize=10)
    ax.legend(fontsize=7)
    c = to_numpy(channel_absmax)
    ax2.bar(np.arange(c.size), c, width=1.0, color="C0")
    ax2.set_yscale("log")
    plain_log_ticks(ax2.yaxis)
    ax2.set_xlabel("input channel j")
    ax2.set_ylabel("max |X_j|")
    ax2.set_title(f"{layer_name}: per-channel range", fontsize=10)
    return fig


def mask_patterns(named_masks, rows=16, cols=48):
    """The top-left rows × cols block of each named keep-mask (dark: kept): the shape of each sparsity."""
    n = len(named_masks)
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 2.2), layout="constrained", squeeze=False)
    for ax, (name, m) in zip(axes[0], named_masks.items()):
        m = to_numpy(m)
        ax.imshow(m[:rows, :cols].T, cmap="Greys", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
        ax.set_title(f"{name}: {100 * (1 - m.mean()):.0f}% removed", fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("input i")
        ax.set_ylabel("output j")
    return fig


def perplexity_vs_bits(rows):
    """Quantization's trade-off: perplexity against bits per compressed weight (rows from bench quality)."""
    fig, ax = plt.subplots(figsize=(7.5, 4.5), layout="constrained")
    quant = [r for r in rows if "sparsity" not in r and r["method"] not in ("2:4", "wanda-2:4", "kv-int8")]
    base = rows[0]["perplexity"]
    placed = []  # points already labelled: a label near another one is moved up a line
    for r in sorted(quant, key=lambda r: r["perplexity"]):
        x, y = r["bits_per_weight"], r["perplexity"]
        near = sum(abs(math.log2(x / px)) < 0.25 and abs(math.log(y / py)) < 0.05 for px, py in placed)
        placed.append((x, y))
        ax.plot(x, y, "o", color="C3" if r["method"] == "float32" else "C0")
        ax.annotate(method_label(r), (x, y), fontsize=7, xytext=(5, 2 + 9 * near), textcoords="offset points",
                    arrowprops=dict(arrowstyle="-", lw=0.4, color="grey") if near else None)
    ax.axhline(base, color="grey", ls=":", lw=0.8)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    plain_log_ticks(ax.xaxis)
    plain_log_ticks(ax.yaxis)
    ax.set_xlabel("bits per weight (compressed matrices, scales included)")
    ax.set_ylabel("perplexity on the evaluation text")
    ax.set_title(f"SmolLM2-135M: perplexity against bits per weight (float32: {base:.2f})", fontsize=10)
    return fig


def perplexity_vs_sparsity(rows):
    """Pruning's trade-off: perplexity against the fraction of weights removed, per method."""
    fig, ax = plt.subplots(figsize=(6.5, 4), layout="constrained")
    base = rows[0]["perplexity"]
    for i, method in enumerate(("magnitude", "wanda", "magnitude-global")):
        pts = sorted((r["sparsity"], r["perplexity"]) for r in rows if r["method"] == method)
        if pts:
            ax.plot([0.0] + [p[0] for p in pts], [base] + [p[1] for p in pts], "o-", color=f"C{i}", label=method)
    for i, method in enumerate(("2:4", "wanda-2:4")):
        for r in rows:
            if r["method"] == method:
                ax.plot(0.5, r["perplexity"], "s" if i == 0 else "D", color=f"C{i + 3}", label=f"{method} (50%)")
    ax.set_yscale("log")
    plain_log_ticks(ax.yaxis)
    ax.set_xlabel("sparsity (fraction of weights set to 0)")
    ax.set_ylabel("perplexity on the evaluation text")
    ax.set_title("SmolLM2-135M: perplexity against sparsity", fontsize=10)
    ax.legend(fontsize=8)
    return fig


def layer_errors(errors, names):
    """Relative weight error ||W - deq(W)|| / ||W|| of every compressed matrix, one line per scheme."""
    fig, ax = plt.subplots(figsize=(10, 3.8), layout="constrained")
    for i, (scheme, errs) in enumerate(errors.items()):
        ax.plot(errs, ".-", color=f"C{i}", lw=0.8, label=scheme)
    kinds = [n.rsplit("/", 1)[-1] for n in names]
    layer_starts = [i for i, n in enumerate(names) if kinds[i] == kinds[0]]
    ax.set_xticks(layer_starts[::3], [names[i].split("/")[2] for i in layer_starts[::3]])
    ax.set_yscale("log")
    plain_log_ticks(ax.yaxis)
    order = ", ".join(dict.fromkeys(kinds))
    ax.set_xlabel(f"layer (the matrices of each layer in order: {order})")
    ax.set_ylabel("relative weight error")
    ax.set_title("Quantization error of every matrix of SmolLM2-135M", fontsize=10)
    ax.legend(fontsize=8)
    return fig
