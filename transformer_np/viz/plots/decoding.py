"""Chapter 6: decoding with and without the KV cache, its memory, sampling distributions and beam search."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from ...core.backend import to_numpy
from .base import plain_log_ticks


def decode_speed(rows, title="Greedy decoding"):
    """Mean time per generated token with and without the KV cache (rows as from bench_decode)."""
    fig, ax = plt.subplots(figsize=(6.5, 4), layout="constrained")
    ax.plot([r["tokens"] for r in rows], [1e3 * r["cache_s"] / r["tokens"] for r in rows], "o-",
            label="with KV cache: O(t) per step")
    timed = [r for r in rows if "no_cache_s" in r]
    ax.plot([r["tokens"] for r in timed], [1e3 * r["no_cache_s"] / r["tokens"] for r in timed], "s-",
            label="without: recompute all t tokens every step")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    plain_log_ticks(ax.xaxis)
    plain_log_ticks(ax.yaxis)
    ax.set_xlabel("generated tokens n")
    ax.set_ylabel("ms per generated token (mean over the run)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    return fig


def decode_flops(t, with_cache, without_cache):
    """FLOPs per generated token against the context length, with and without the KV cache."""
    fig, ax = plt.subplots(figsize=(6, 3.6), layout="constrained")
    ax.loglog(t, to_numpy(without_cache), label="recompute everything: t·24LC² + 4Lt²C")
    ax.loglog(t, to_numpy(with_cache), label="KV cache: 24LC² + 4LtC")
    plain_log_ticks(ax.xaxis)
    ax.set_xlabel("context length t (tokens)")
    ax.set_ylabel("FLOPs per generated token")
    ax.set_title("The cost of one more token", fontsize=10)
    ax.legend(fontsize=8)
    return fig


def cache_growth(tokens, nbytes, formula_bytes_per_token):
    """Measured KV-cache size against tokens, with the formula 2·L·B·H·D·itemsize bytes per token."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6), layout="constrained")
    t = np.asarray(tokens)
    ax.plot(t, np.asarray(nbytes) / 2**10, "o", label="measured (cache_bytes)")
    ax.plot(t, t * formula_bytes_per_token / 2**10, "-", label="2·L·B·H·D·itemsize per token")
    ax.set_xlabel("tokens in the cache t")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # tokens come whole
    ax.set_ylabel("KiB")
    ax.set_title("The KV cache grows linearly with the sequence")
    ax.legend(fontsize=8)
    return fig


def sampling_distributions(named_probs, labels=None, base=None):
    """One bar chart per decoding rule: the next-token distribution it samples from; ``base`` (the plain
    softmax) is drawn dotted behind each, so what a rule removes or moves stays visible."""
    n = len(named_probs)
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n, 2.8), layout="constrained", sharey=True, squeeze=False)
    for ax, (name, p) in zip(axes[0], named_probs.items()):
        p = to_numpy(p)
        if base is not None:
            ax.bar(range(len(p)), to_numpy(base), fill=False, edgecolor="gray", linestyle=":")
        ax.bar(range(len(p)), p, color="C0")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("token id")
        ax.set_xticks(range(len(p)), labels if labels is not None else range(len(p)), fontsize=7)
    axes[0, 0].set_ylabel("probability")
    fig.suptitle("Next-token distributions: temperature reshapes, top-k and top-p cut"
                 + (" (dotted: plain softmax, τ = 1)" if base is not None else ""))
    return fig


def beam_tree(history, final=None):
    """A beam search drawn as a tree: history[step] = (sequences, scores) kept after that step."""
    fig, ax = plt.subplots(figsize=(2.0 + 1.6 * len(history), 3.8), layout="constrained")
    pos = {(): (0, 0.0)}
    ax.text(0, 0, "prompt", ha="right", va="center", fontsize=8)
    for step, (seqs, scores) in enumerate(history, start=1):
        ys = np.linspace(1, -1, len(seqs)) if len(seqs) > 1 else [0.0]
        for seq, score, y in zip(seqs, scores, ys):
            key = tuple(seq)
            pos[key] = (step, y)
            parent = pos.get(tuple(seq[:-1]))
            if parent is not None:
                ax.plot([parent[0], step], [parent[1], y], "-", color="gray", lw=0.8)
            best = final is not None and tuple(final[: len(seq)]) == key
            ax.plot(step, y, "o", color="C3" if best else "C0")
            ax.text(step, y + 0.07, f"{seq[-1]} ({score:.1f})", ha="center", fontsize=7)
    ax.set_xlabel("step (token id and total log-prob of each kept hypothesis)")
    ax.set_yticks([])
    ax.set_title("Beam search: the hypotheses kept at each step (red: the best final one)")
    return fig
