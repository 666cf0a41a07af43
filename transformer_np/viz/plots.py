"""Plot helpers shared by the notebooks and ``python -m transformer_np figures``.

Each function draws one picture onto a new (or given) matplotlib figure and returns the figure; data go
through ``to_numpy`` first, so arrays of any backend can be drawn.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import FuncFormatter, LogFormatter, MaxNLocator, NullFormatter

from ..core.backend import to_numpy
from ..core.nn import gelu, relu, softmax
from ..efficient.compress import method_label
from ..training.optim import noam_lr


class _PlainLogFormatter(LogFormatter):
    """matplotlib's choice of which log ticks to label (all minor ones over a short range, a few over two
    decades, none beyond), written as plain numbers: 0.001, 20, 300 — not 1e−03 or 2×10⁰."""

    def _num_to_string(self, x, vmin, vmax):
        return f"{x:g}"


def plain_log_ticks(axis):
    """Label a log axis with plain numbers (2, 3, 4, …), not 2×10⁰."""
    base = getattr(axis.get_transform(), "base", 10)  # call after set_xscale / set_yscale
    axis.set_major_formatter(_PlainLogFormatter(base=base, labelOnlyBase=False))
    axis.set_minor_formatter(_PlainLogFormatter(base=base, labelOnlyBase=False, minor_thresholds=(1, 0.4)))


def heatmap(ax, a, *, title, xlabel, ylabel, xticks=None, yticks=None, cmap="viridis", vmin=None, vmax=None,
            colorbar=True, annotate=False):
    """One labelled heatmap with a colour bar."""
    a = to_numpy(a)
    im = ax.imshow(a, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if xticks is not None:
        ax.set_xticks(range(len(xticks)), xticks, rotation=60 if max(map(len, map(str, xticks))) > 2 else 0)
    if yticks is not None:
        ax.set_yticks(range(len(yticks)), yticks)
    if annotate:
        for (i, j), v in np.ndenumerate(a):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if v < (a.max() + a.min()) / 2 else "black")
    if colorbar:
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return im


def positional_encoding_heatmap(pe):
    """The sin-cos table PE (positions x dims)."""
    fig, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
    heatmap(ax, pe, title=f"Sinusoidal positional encoding PE, {pe.shape[0]} positions x {pe.shape[1]} dims",
            xlabel="dimension j (even: sin, odd: cos)", ylabel="position pos", cmap="RdBu", vmin=-1, vmax=1)
    return fig


def positional_encoding_waves(pe, dims=(0, 10, 20, 40)):
    """A few columns of PE as functions of position: each pair (2i, 2i+1) has its own wavelength."""
    pe = to_numpy(pe)
    d = pe.shape[1]
    fig, ax = plt.subplots(figsize=(9, 3.5), layout="constrained")
    for j in dims:
        wavelength = 2 * np.pi * 10000 ** ((j - j % 2) / d)
        ax.plot(pe[:, j], label=f"dim {j}: wavelength {wavelength:.0f}")
    ax.set_title("Columns of PE are sinusoids whose wavelengths grow geometrically from 2π to 10000·2π")
    ax.set_xlabel("position pos")
    ax.set_ylabel("PE(pos, dim)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    return fig


def positional_similarity(pe, title="Dot products PE(p)·PE(q): constant along diagonals"):
    """P(p)·P(q) for all pairs of positions (for the sin-cos table it depends only on the offset q - p)."""
    pe = to_numpy(pe)
    fig, ax = plt.subplots(figsize=(5.5, 4.5), layout="constrained")
    heatmap(ax, pe @ pe.T, title=title, xlabel="position q", ylabel="position p", cmap="magma")
    return fig


def softmax_saturation(d_ks=(4, 16, 64, 256, 1024), n_keys=32, n_trials=400, seed=0):
    """Why divide by sqrt(d_k): the largest softmax weight of random q·k scores, with and without scaling."""
    rng = np.random.default_rng(seed)
    unscaled, scaled = [], []
    for d in d_ks:
        q = rng.standard_normal((n_trials, 1, d))
        k = rng.standard_normal((n_trials, n_keys, d))
        s = (q @ np.swapaxes(k, -1, -2))[:, 0]  # (trials, keys): variance d
        unscaled.append(softmax(s).max(-1).mean())
        scaled.append(softmax(s / np.sqrt(d)).max(-1).mean())
    fig, ax = plt.subplots(figsize=(6, 3.8), layout="constrained")
    ax.plot(d_ks, unscaled, "o-", label="softmax(q·k): saturates towards one-hot")
    ax.plot(d_ks, scaled, "s-", label="softmax(q·k / √d_k): stays spread")
    ax.axhline(1 / n_keys, color="gray", ls=":", label=f"uniform (1/{n_keys})")
    ax.set_xscale("log", base=2)
    plain_log_ticks(ax.xaxis)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("d_k (q, k with unit-variance entries)")
    ax.set_ylabel("mean of the largest weight")
    ax.set_title(f"Scores q·k have variance d_k: dividing by √d_k keeps\nsoftmax out of saturation ({n_keys} keys)")
    ax.legend(fontsize=8)
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


def residual_stream_norms(norms):
    """Mean ||x|| of the residual stream after each layer, one line per named variant."""
    fig, ax = plt.subplots(figsize=(6, 3.6), layout="constrained")
    for name, values in norms.items():
        ax.plot(range(len(values)), values, "o-", label=name)
    ax.set_xlabel("layer (0 = input embedding)")
    ax.set_ylabel("mean ‖x‖ over tokens")
    ax.set_title("The residual stream's size through a stack")
    ax.legend(fontsize=8)
    return fig


def gradient_norms(norms):
    """Per-layer gradient norms at initialisation, one line per named variant."""
    fig, ax = plt.subplots(figsize=(6, 3.6), layout="constrained")
    for name, values in norms.items():
        ax.plot(range(1, len(values) + 1), values, "o-", label=name)
    ax.set_xlabel("layer (1 = next to the input)")
    ax.set_ylabel("‖∂L/∂θ_layer‖")
    ax.set_xticks(range(1, len(next(iter(norms.values()))) + 1))
    ax.set_title("Gradient norms per layer at initialisation, 12 layers", fontsize=10)
    ax.legend(fontsize=8)
    return fig


def layer_norm_statistics(x, y):
    """Per-token mean and std before (x) and after (y) layer norm."""
    x, y = to_numpy(x).reshape(-1, x.shape[-1]), to_numpy(y).reshape(-1, y.shape[-1])
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), layout="constrained")
    for ax, stat, f in ((axes[0], "mean", np.mean), (axes[1], "standard deviation", np.std)):
        before, after = f(x, -1), f(y, -1)
        bins = np.histogram_bin_edges(np.concatenate([before, after]), 40)  # shared, so both are visible
        ax.hist(before, bins=bins, alpha=0.6, label="before")
        ax.hist(after, bins=bins, alpha=0.6, label="after (γ=1, β=0)")
        ax.set_title(f"per-token {stat}")
        ax.set_xlabel(stat)
        ax.set_ylabel("tokens")
        ax.legend(fontsize=8)
    fig.suptitle("Layer norm gives every token mean 0 and standard deviation 1")
    return fig


def activations():
    """ReLU and the exact GELU x·Φ(x)."""
    x = np.linspace(-4, 4, 401)
    fig, ax = plt.subplots(figsize=(5.5, 3.6), layout="constrained")
    ax.plot(x, relu(x), label="ReLU(x) = max(0, x)")
    ax.plot(x, gelu(x), label="GELU(x) = x·Φ(x)")
    ax.axhline(0, color="gray", lw=0.5)
    ax.set_xlabel("x")
    ax.set_ylabel("activation")
    ax.set_title("FFN activations: ReLU (paper) and exact GELU (BERT, GPT)")
    ax.legend(fontsize=8)
    return fig


def encoder_decoder_attention(attention, src_labels, tgt_labels, layer=-1, head=0, title=None, tgt_keys=None):
    """Encoder self-, decoder masked self- and cross-attention maps of one layer and head (head=None: the mean
    over heads).  tgt_labels name the decoder's queries, tgt_keys its keys (default: the same labels)."""
    tgt_keys = tgt_labels if tgt_keys is None else tgt_keys
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2), layout="constrained")
    panels = (("encoder self-attention", attention["encoder"], src_labels, src_labels),
              ("decoder masked self-attention", attention["decoder_self"], tgt_labels, tgt_keys),
              ("cross-attention (decoder -> encoder)", attention["decoder_cross"], tgt_labels, src_labels))
    for ax, (name, maps, q, k) in zip(axes, panels):
        w = to_numpy(maps[layer])[0]
        w = w.mean(axis=0) if head is None else w[head]
        which = "mean over heads" if head is None else f"head {head}"
        heatmap(ax, w, title=f"{name}\nlayer {layer % len(maps)}, {which}", xlabel="key", ylabel="query",
                xticks=k, yticks=q, vmin=0, vmax=1)
    if title:
        fig.suptitle(title)
    return fig


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


def layer_head_scores(named_scores):
    """One (L, H) heatmap per named score: how strongly each head of each layer shows a pattern."""
    n = len(named_scores)
    fig, axes = plt.subplots(1, n, figsize=(5 * n, 3.4), layout="constrained", squeeze=False)
    for ax, (name, sc) in zip(axes[0], named_scores.items()):
        sc = to_numpy(sc)
        heatmap(ax, sc, title=name, xlabel="head", ylabel="layer", xticks=list(range(sc.shape[1])),
                yticks=list(range(sc.shape[0])), vmin=0, vmax=1)
    return fig


def similarity_matrix(sims, labels, title="Cosine similarity of sentence embeddings"):
    """A labelled (N, N) similarity heatmap."""
    n = len(labels)
    fig, ax = plt.subplots(figsize=(4 + 0.45 * n, 2.5 + 0.4 * n), layout="constrained")
    short = [t if len(t) <= 32 else t[:29] + "..." for t in labels]
    heatmap(ax, sims, title=title, xlabel="sentence", ylabel="sentence", xticks=list(range(n)),
            yticks=short, vmin=-0.1, vmax=1, cmap="magma", annotate=n <= 10)
    return fig


def learning_rate_schedule(steps, d_model, warmups=(400, 4000)):
    """The paper's schedule d_model^-0.5 · min(step^-0.5, step · warmup^-1.5) for a few warm-ups."""
    fig, ax = plt.subplots(figsize=(6, 3.4), layout="constrained")
    s = np.arange(1, steps + 1)
    for w in warmups:
        ax.plot(s, [noam_lr(int(t), d_model, w) for t in s], label=f"warmup {w}")
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate")
    ax.set_title(f"lrate = d_model^-0.5 · min(step^-0.5, step · warmup^-1.5), d_model = {d_model}")
    ax.legend(fontsize=8)
    return fig


def _smoothed_loss(history):
    """(steps, loss averaged over windows of 1% of the run, k): a readable curve of a noisy loss."""
    loss = np.asarray(history["loss"])
    k = max(1, len(loss) // 100)
    return np.asarray(history["step"])[k - 1:], np.convolve(loss, np.ones(k) / k, mode="valid"), k


def training_run(history, name):
    """One run: smoothed training loss and, on a second axis, the periodic validation accuracy."""
    fig, ax = plt.subplots(figsize=(6, 3.6), layout="constrained")
    steps, smooth, k = _smoothed_loss(history)
    ax.plot(steps, smooth, label=f"training loss (mean of {k} steps)")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy")
    ax.set_yscale("log")
    plain_log_ticks(ax.yaxis)
    if history["val"]:
        ax2 = ax.twinx()
        s, acc = zip(*history["val"])
        ax2.plot(s, acc, "o-", color="C1", label="validation accuracy")
        ax2.set_ylabel("validation accuracy")
        ax2.set_ylim(0, 1.02)
        ax2.legend(loc="center right", fontsize=8)
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title(f"Training the '{name}' model in NumPy")
    return fig


def training_curves(histories, floors=None):
    """Several runs side by side: {name: history with "step", "loss" and "val" [(step, accuracy)]}.

    Left, the smoothed training loss with, dashed, each run's floor H(q) (``floors`` {name: nats}: the entropy
    of its label-smoothed targets, below which no model's loss can go); right, the validation accuracy."""
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    for i, (name, h) in enumerate(histories.items()):
        steps, smooth, _ = _smoothed_loss(h)
        ax.plot(steps, smooth, color=f"C{i}", label=name)
        if floors and name in floors:
            ax.axhline(floors[name], color=f"C{i}", ls="--", lw=0.9, label=f"{name}: floor H(q) = {floors[name]:.2f}")
        if h.get("val"):
            s, acc = zip(*h["val"])
            ax2.plot(s, acc, "o-", color=f"C{i}", label=name)
    ax.set_yscale("log")
    plain_log_ticks(ax.yaxis)
    ax.set_xlabel("step")
    ax.set_ylabel("training cross-entropy, nats (smoothed)")
    ax.set_title("Training loss: label smoothing keeps it above H(q)")
    ax.legend(fontsize=7)
    ax2.set_xlabel("step")
    ax2.set_ylabel("accuracy on the validation split")
    ax2.set_ylim(0, 1.02)
    ax2.set_title("Validation, measured during training")
    ax2.legend(fontsize=8, loc="lower right")
    return fig


def label_smoothing_targets(n_classes, label_smoothing, target):
    """The training target of one position: one-hot vs label-smoothed q = (1 - ε) onehot + ε/V."""
    V, eps = n_classes, label_smoothing
    q = np.full(V, eps / V)
    q[target] += 1 - eps
    fig, ax = plt.subplots(figsize=(6.5, 3.2), layout="constrained")
    x = np.arange(V)
    ax.bar(x - 0.2, np.eye(V)[target], width=0.4, color="lightgrey", edgecolor="grey", label="one-hot (ε = 0)")
    ax.bar(x + 0.2, q, width=0.4, color="C0", label=f"smoothed, ε = {eps:g}")
    ax.set_xticks(x)
    ax.set_xlabel(f"class v (target y = {target})")
    ax.set_ylabel("target probability q_v")
    ax.set_title(f"Label smoothing, V = {V}: {1 - eps + eps / V:.3f} on y, {eps / V:.3f} on each other class")
    ax.legend(fontsize=8)
    return fig


# --- chapter 9: a modern LLM ----------------------------------------------------------------------------------
def norms_compared(x, layer_normed, rms_normed):
    """One vector before and after layer norm and RMSNorm (γ = 1): LN centres and rescales, RMSNorm rescales."""
    x, a, b = (to_numpy(v).reshape(-1) for v in (x, layer_normed, rms_normed))
    fig, axes = plt.subplots(1, 3, figsize=(10, 2.8), layout="constrained", sharey=True)
    for ax, v, title in zip(axes, (x, a, b), ("x", f"LayerNorm(x): mean {a.mean():.2f}, std {a.std():.2f}",
                                             f"RMSNorm(x): mean {b.mean():.2f}, rms {np.sqrt(np.mean(b * b)):.2f}")):
        ax.bar(range(len(v)), v, color="C0" if v is x else "C1")
        ax.axhline(0, color="k", lw=0.5)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("feature c")
    return fig


def rope_rotation(panels):
    """Where RoPE sends the pair (1, 0) at each position: one panel per (title, positions, angles θ_p,i)."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4), layout="constrained")
    circle = np.linspace(0, 2 * np.pi, 200)
    for ax, (title, positions, angles) in zip(np.atleast_1d(axes), panels):
        ax.plot(np.cos(circle), np.sin(circle), color="0.8")
        for p, a in zip(positions, to_numpy(angles)):
            ax.annotate("", xy=(np.cos(a), np.sin(a)), xytext=(0, 0), arrowprops=dict(arrowstyle="->", color="C0"))
            ax.text(1.15 * np.cos(a), 1.15 * np.sin(a), str(p), ha="center", va="center", fontsize=7)
        ax.set_aspect("equal")
        ax.set_xlim(-1.35, 1.35)
        ax.set_ylim(-1.35, 1.35)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    return fig


def gqa_sharing(n_heads, n_kv_heads):
    """Grouped-query attention: each key/value head serves n_heads / n_kv_heads query heads."""
    G = n_heads // n_kv_heads
    fig, ax = plt.subplots(figsize=(8, 2.6), layout="constrained")
    for h in range(n_heads):
        ax.add_patch(plt.Rectangle((h, 1.6), 0.8, 0.6, color=f"C{h // G}", alpha=0.7))
        ax.text(h + 0.4, 1.9, f"q{h}", ha="center", va="center", fontsize=8)
    for j in range(n_kv_heads):
        x0 = j * G + (G - 0.8) / 2
        ax.add_patch(plt.Rectangle((x0, 0), 0.8, 0.6, color=f"C{j}"))
        ax.text(x0 + 0.4, 0.3, f"k,v{j}", ha="center", va="center", fontsize=8, color="w")
        for h in range(j * G, (j + 1) * G):
            ax.plot([h + 0.4, x0 + 0.4], [1.6, 0.6], color=f"C{j}", lw=1)
    ax.set_xlim(-0.2, n_heads)
    ax.set_ylim(-0.2, 2.4)
    ax.axis("off")
    ax.set_title(f"{n_heads} query heads share {n_kv_heads} key/value heads: the KV cache is {G}× smaller", fontsize=10)
    return fig


def quant_block(raw, values, type_name):
    """One quantized block: its bytes (scale, minimum, packed 4-bit or 8-bit values) and the 32 numbers they give."""
    raw, values = np.asarray(raw, dtype=np.uint8), to_numpy(values)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 4), layout="constrained", height_ratios=[1, 2])
    header = {"Q4_1": 4, "Q4_0": 2, "Q8_0": 2, "Q8_1": 4}.get(type_name, 0)
    colors = ["C1"] * header + ["C0"] * (len(raw) - header)
    top.bar(range(len(raw)), np.ones(len(raw)), color=colors, width=0.9)
    for i, b in enumerate(raw):
        top.text(i, 0.5, f"{b:02x}", ha="center", va="center", fontsize=7, color="w")
    top.set_title(f"{type_name} block: {len(raw)} bytes (orange: fp16 scale{' and minimum' if header == 4 else ''}, "
                  f"blue: quantized values)", fontsize=9)
    top.axis("off")
    bottom.bar(range(len(values)), values)
    bottom.set_xlabel("value index in the block")
    bottom.set_title("the block's 32 values, dequantized", fontsize=9)
    return fig


def bpe_steps(steps, title="Byte-level BPE, one merge a line"):
    """The symbols of one piece after each merge (top: the bytes; bottom: the final tokens)."""
    fig, ax = plt.subplots(figsize=(9, 0.35 * len(steps) + 0.6), layout="constrained")
    for row, symbols in enumerate(steps):
        x = 0.0
        for sym in symbols:
            w = 0.25 + 0.12 * len(sym)
            ax.add_patch(plt.Rectangle((x, -row - 0.4), w - 0.05, 0.8, color="C0", alpha=0.25))
            ax.text(x + w / 2, -row, sym, ha="center", va="center", fontsize=8, family="monospace")
            x += w
    ax.set_xlim(0, max(sum(0.25 + 0.12 * len(s) for s in step) for step in steps))
    ax.set_ylim(-len(steps) + 0.4, 0.6)
    ax.axis("off")
    ax.set_title(title, fontsize=10)
    return fig


def attention_sink(weights, tokens, layer, head):
    """Left: how much of each layer's attention lands on the first token (mean over heads and queries).
    Right: one head's weights — most queries send most of their attention to the first token."""
    mass = [float(to_numpy(w)[:, 1:, 0].mean()) for w in weights]  # (H, T, T) per layer; queries after the first
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    ax1.bar(range(len(mass)), mass)
    ax1.set_xlabel("layer")
    ax1.set_ylabel("attention on token 0")
    ax1.set_title("The attention sink: weight on the first token", fontsize=10)
    heatmap(ax2, to_numpy(weights[layer])[head], title=f"layer {layer}, head {head}", xlabel="key",
            ylabel="query", xticks=tokens, yticks=tokens)
    return fig


def next_token_bar(probs, labels, title="Next-token distribution"):
    """The k most likely next tokens and their probabilities."""
    probs = to_numpy(probs)
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(probs) + 1), layout="constrained")
    ax.barh(range(len(probs))[::-1], probs)
    ax.set_yticks(range(len(probs))[::-1], [repr(t) for t in labels], fontsize=8)
    ax.set_xlabel("probability")
    ax.set_title(title, fontsize=10)
    return fig


# --- chapter 10: serving ------------------------------------------------------------------------------------
def online_softmax(scores, block):
    """The online softmax of one row of scores, tile by tile: the running maximum m, the running normaliser l
    (rescaled whenever m grows), against the exact ones."""
    s = to_numpy(scores).reshape(-1)
    m, ell, ms, ells, edges = -np.inf, 0.0, [], [], []
    for start in range(0, len(s), block):
        tile = s[start:start + block]
        m_new = max(m, tile.max())
        ell = ell * np.exp(m - m_new) + np.exp(tile - m_new).sum()
        m = m_new
        ms.append(m)
        ells.append(ell)
        edges.append(start + len(tile))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.4), layout="constrained")
    ax1.plot(s, ".", color="0.6", label="scores of one query")
    ax1.step([0] + edges, [ms[0]] + ms, where="pre", color="C1", label="running max m")
    for e in edges[:-1]:
        ax1.axvline(e, color="0.85", lw=0.8)
    ax1.set_xlabel("key s")
    ax1.set_title(f"tiles of {block} keys", fontsize=10)
    ax1.legend(fontsize=8)
    exact = np.exp(s - s.max()).sum()
    ax2.plot(range(1, len(ells) + 1), [e * np.exp(m_i - s.max()) for e, m_i in zip(ells, ms)], "o-",
             label="running l, expressed at the final max")
    ax2.axhline(exact, color="C3", ls="--", label="exact Σ e^(s - max)")
    ax2.set_xlabel("tiles seen")
    ax2.set_xticks(range(1, len(ells) + 1))
    ax2.set_title("the normaliser converges to the exact one", fontsize=10)
    ax2.legend(fontsize=8)
    return fig


def memory_vs_length(rows):
    """Peak memory of naive and blockwise attention against the sequence length (from bench serve)."""
    T = [r["T"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.6), layout="constrained")
    ax.loglog(T, [r["naive_peak_bytes"] / 2**20 for r in rows], "o-", label="naive: T × T scores")
    ax.loglog(T, [r["blockwise_peak_bytes"] / 2**20 for r in rows], "s-", label="blockwise: tiles of 256 × 256")
    ax.set_xticks(T, [str(t) for t in T])
    plain_log_ticks(ax.yaxis)
    ax.set_xlabel("sequence length T")
    ax.set_ylabel("peak memory (MiB)")
    ax.set_title("Causal attention, one head, d = 64 (measured)", fontsize=10)
    ax.legend(fontsize=8)
    return fig


def block_tables(tables, title="Paged KV cache: each sequence's block table"):
    """One row per sequence, one cell per block (labelled with its id); a block shared by several sequences
    has the same colour in each."""
    ids = sorted({b for t in tables for b in t})
    colour = {b: plt.cm.tab10(i % 10) for i, b in enumerate(ids)}
    shared = {b for b in ids if sum(b in t for t in tables) > 1}
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(tables) + 0.8), layout="constrained")
    for row, table in enumerate(tables):
        for col, b in enumerate(table):
            ax.add_patch(plt.Rectangle((col, -row - 0.4), 0.9, 0.8, facecolor=colour[b], alpha=0.8,
                                       edgecolor="k" if b in shared else "none", lw=2))
            ax.text(col + 0.45, -row, f"block {b}" + (" (shared)" if b in shared else ""), ha="center",
                    va="center", fontsize=8)
    ax.set_xlim(0, max(len(t) for t in tables))
    ax.set_ylim(-len(tables) + 0.4, 0.6)
    ax.set_yticks([-r for r in range(len(tables))], [f"sequence {r}" for r in range(len(tables))], fontsize=8)
    ax.set_xticks([])
    ax.set_title(f"{title} (framed: blocks shared by several sequences)", fontsize=10)
    return fig


def batching_timeline(timeline, n_requests):
    """Which request each batch slot decodes at each step of continuous batching."""
    slots = {}  # request -> the slot it keeps from admission to finish
    grid = np.full((max(len(t) for t in timeline), len(timeline)), np.nan)
    for step, ids in enumerate(timeline):
        for r in [r for r in slots if r not in ids]:
            del slots[r]
        for r in ids:
            if r not in slots:
                slots[r] = min(set(range(grid.shape[0])) - set(slots.values()))
            grid[slots[r], step] = r
    fig, ax = plt.subplots(figsize=(10, 2.8), layout="constrained")
    im = ax.imshow(grid, aspect="auto", cmap="tab20", vmin=0, vmax=max(n_requests - 1, 1), interpolation="nearest")
    ax.set_xlabel("step")
    ax.set_ylabel("batch slot")
    ax.set_title("Continuous batching: a finished request's slot is refilled at the next step", fontsize=10)
    fig.colorbar(im, ax=ax, label="request")
    return fig


def speculative_tokens(pieces, kinds, title="Speculative decoding"):
    """Generated text coloured by where each token came from: an accepted draft, the target (a correction or
    the bonus token of a fully accepted pass)."""
    colours = {"draft": "C2", "target": "C3"}
    fig, ax = plt.subplots(figsize=(10, 2.2), layout="constrained")
    x, y = 0.0, 0.0
    for text, kind in zip(pieces, kinds):
        w = 0.012 * max(len(text), 1) + 0.004
        if x + w > 1:
            x, y = 0.0, y - 0.25
        ax.text(x, y, text.replace("\n", "⏎"), color=colours[kind], fontsize=9, family="monospace",
                va="top", bbox=dict(facecolor=colours[kind], alpha=0.12, edgecolor="none", pad=1))
        x += w
    ax.set_xlim(0, 1)
    ax.set_ylim(y - 0.3, 0.1)
    ax.axis("off")
    ax.set_title(f"{title} — green: accepted draft tokens, red: tokens from the target's pass", fontsize=10)
    return fig


# --- chapter 11: making it smaller -----------------------------------------------------------------------------
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


def roofline(hardware, rows, title=None):
    """The roofline min(peak, intensity × bandwidth) of ``hardware`` with measured steps as points (rows from
    bench cost: kind, size, intensity, flops, measured_s)."""
    fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    lo = min(min(r["intensity"] for r in rows) / 2, 0.1)
    hi = max(max(r["intensity"] for r in rows) * 2, 4 * hardware.critical_intensity)
    x = np.geomspace(lo, hi, 200)
    ax.plot(x, np.minimum(hardware.peak_flops, x * hardware.bandwidth) / 1e9, color="k", lw=1.2,
            label=f"roofline: {hardware.peak_flops / 1e9:.0f} GFLOP/s, {hardware.bandwidth / 1e9:.1f} GB/s")
    ax.axvline(hardware.critical_intensity, color="grey", ls=":", lw=0.8)
    for i, kind in enumerate(dict.fromkeys(r["kind"] for r in rows)):
        pts = [r for r in rows if r["kind"] == kind]
        ax.plot([r["intensity"] for r in pts], [r["flops"] / r["measured_s"] / 1e9 for r in pts], "o-",
                color=f"C{i}", label=f"{kind}, measured")
        for r in pts:
            ax.annotate(str(r["size"]), (r["intensity"], r["flops"] / r["measured_s"] / 1e9), fontsize=7,
                        xytext=(4, -9), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_yscale("log")
    plain_log_ticks(ax.xaxis)
    plain_log_ticks(ax.yaxis)
    ax.set_xlabel("arithmetic intensity (FLOPs per byte moved)")
    ax.set_ylabel("GFLOP/s")
    ax.set_title(title or f"Roofline of {hardware.name} (prefill: T, decode: B, encoder: S)", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    return fig


def layout_comm_times(times, chips, title):
    """Seconds per feed-forward layer spent in collectives, per layout (``times``: name -> {tokens: [per chip
    count]}), against the chip count: Pope et al.'s Figure 2/3 from the formulas of efficient.parallel."""
    panels = list(next(iter(times.values())))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), layout="constrained", squeeze=False)
    for ax, tokens in zip(axes[0], panels):
        for i, (layout, per) in enumerate(times.items()):
            ax.plot(chips, [1e3 * t for t in per[tokens]], "o-", color=f"C{i}", label=layout)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(chips, [str(c) for c in chips])
        plain_log_ticks(ax.yaxis)
        ax.set_xlabel("chips")
        ax.set_title(f"{tokens:,} tokens per step", fontsize=9)
    axes[0][0].set_ylabel("ms in collectives per FFN layer")
    axes[0][-1].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig


def layout_owners(named, title="Which chip holds which block of W_in (E × F)"):
    """One panel per layout: each entry of a weight matrix coloured by the chip that stores it (``named``:
    name -> int array of chip indices)."""
    fig, axes = plt.subplots(1, len(named), figsize=(3.4 * len(named), 2.6), layout="constrained", squeeze=False)
    for ax, (name, owner) in zip(axes[0], named.items()):
        n = int(owner.max()) + 1
        ax.imshow(owner, cmap=plt.get_cmap("tab10", max(n, 2)), vmin=-0.5, vmax=max(n, 2) - 0.5, aspect="auto")
        for (i, j), c in np.ndenumerate(owner):
            if (i == 0 or owner[i - 1, j] != c) and (j == 0 or owner[i, j - 1] != c):
                ax.text(j + 0.3, i + 0.7, f"chip {c}", fontsize=7, color="white")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("F (d_ff)")
        ax.set_ylabel("E (d_model)")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=10)
    return fig


def save(fig, path):
    """Write a PNG without volatile metadata (same bytes for the same picture), then close the figure."""
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def sweep(rows, title="What each hyper-parameter buys"):
    """The hyper-parameter sweep (efficient.hyperparams): held-out accuracy against parameters (left) and against
    training seconds (right); colour the width, marker the heads, filled = 1 layer per stack, open = 2; other seeds
    of the same configuration as small grey dots."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    widths = sorted({r["d_model"] for r in rows})
    for ax, key, label in ((axes[0], "params", "parameters"), (axes[1], "train_s", "training seconds")):
        for r in rows:
            if r["seed"] != 0:
                ax.plot(r[key], r["accuracy"], ".", color="grey", ms=5)
                continue
            colour = f"C{widths.index(r['d_model'])}"
            marker = {1: "o"}.get(r["n_heads"], "s")
            if r["n_kv_heads"] != r["n_heads"] or r["d_ff"] != 2 * r["d_model"]:
                marker = "*"
            ax.plot(r[key], r["accuracy"], marker, color=colour, ms=8,
                    mfc=colour if r["n_layers"] == 1 else "none")
        ax.set_xscale("log")
        lo, hi = min(r[key] for r in rows), max(r[key] for r in rows)
        ax.set_xticks([m * 10.0 ** k for k in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
                       for m in (1, 2, 5) if lo / 1.2 <= m * 10.0 ** k <= hi * 1.2])
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(label)
        ax.set_ylabel("held-out exact-match accuracy")
        ax.grid(alpha=0.3)
    handles = [plt.Line2D([], [], color=f"C{i}", marker="o", ls="", label=f"d_model {c}") for i, c in enumerate(widths)]
    handles += [plt.Line2D([], [], color="k", marker="o", ls="", label="1 head"),
                plt.Line2D([], [], color="k", marker="s", ls="", label="4 heads"),
                plt.Line2D([], [], color="k", marker="*", ls="", label="H_kv = 1 or F = 4C"),
                plt.Line2D([], [], color="k", marker="o", mfc="none", ls="", label="2 layers (open)"),
                plt.Line2D([], [], color="grey", marker=".", ls="", label="other seeds")]
    fig.legend(handles=handles, fontsize=7, loc="outside right center")
    fig.suptitle(title, fontsize=10)
    return fig


def fusion(sizes, chunks, title="Operator fusion, measured on this machine"):
    """Left: for each array size (``sizes``: label -> {"plain", "in place, one piece", "pieces, thread pool",
    "bound"} seconds), the plain expression against the fused kernel and the bandwidth bound of one read and one
    write.  Right: the fused kernel's time against its piece size (``chunks``: (elements per piece, seconds on
    one thread, seconds on the pool)) for the largest array."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
    kinds = list(next(iter(sizes.values())))
    width = 0.8 / len(kinds)
    for i, kind in enumerate(kinds):
        xs = np.arange(len(sizes)) + (i - (len(kinds) - 1) / 2) * width
        left.bar(xs, [1e3 * v[kind] for v in sizes.values()], width, color="C7" if kind == "bound" else f"C{i}",
                 label=kind)
    left.set_xticks(np.arange(len(sizes)), list(sizes), fontsize=8)
    left.set_yscale("log")
    left.set_ylabel("ms")
    left.legend(fontsize=7)
    left.set_title("GELU (tanh form): plain NumPy against one fused pass", fontsize=9)
    sizes_el = [c for c, _, _ in chunks]
    right.plot(sizes_el, [1e3 * t for _, t, _ in chunks], "o-", label="one thread")
    right.plot(sizes_el, [1e3 * t for _, _, t in chunks], "s-", label="thread pool")
    right.axhline(1e3 * list(sizes.values())[-1]["bound"], color="C7", ls=":",
                  label="one read + one write at copy bandwidth")
    right.set_xscale("log", base=2)
    right.set_xlabel("elements per piece (float32)")
    right.set_ylabel("ms")
    right.legend(fontsize=8)
    right.set_title(f"what the piece size recovers ({list(sizes)[-1]})", fontsize=9)
    fig.suptitle(title, fontsize=10)
    return fig
