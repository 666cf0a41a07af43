"""Chapter 9: a modern LLM — RMSNorm against layer norm, RoPE, grouped-query sharing, GGUF blocks, BPE,
attention sinks, the next-token distribution."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Patch

from ...core.backend import to_numpy
from .base import heatmap


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


def kv_by_layer(layer_bytes, kinds, context, contexts, windowed, every_global):
    """Left: each layer's KV cache at a ``context``-token context (``layer_bytes``, one per layer; ``kinds``:
    "sliding" or "full" each).  Right: the whole cache against context length, window caches (``windowed``) against
    every layer keeping every position (``every_global``), in MB."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
    colors = ["C0" if k == "sliding" else "C3" for k in kinds]
    ax1.bar(range(len(layer_bytes)), np.asarray(layer_bytes) / 1e6, color=colors)
    ax1.set_xticks(range(len(layer_bytes)))
    ax1.set_xlabel("layer")
    ax1.set_ylabel("KV cache, MB")
    ax1.set_title(f"each layer's KV cache at {context:,} tokens", fontsize=10)
    ax1.legend(handles=[Patch(color="C0", label="sliding (window caches)"), Patch(color="C3", label="global")],
               fontsize=8, loc="upper center")
    ax2.plot(contexts, np.asarray(every_global) / 1e6, "o-", color="C3", label="every layer global")
    ax2.plot(contexts, np.asarray(windowed) / 1e6, "o-", color="C0", label="5 of 6 layers sliding")
    ax2.set_xscale("log", base=2)
    ax2.set_yscale("log")
    ax2.set_xlabel("context (tokens)")
    ax2.set_ylabel("KV cache, MB")
    ax2.set_title("the whole cache against context", fontsize=10)
    ax2.legend(fontsize=8)
    return fig


def window_vs_global(sliding, full, window, titles=("a sliding layer", "a global layer")):
    """Two layers' attention weights (T, T) on the same long text, log colour scale: a sliding layer's are zero
    outside the band of its last ``window`` keys (the lines), a global layer's reach back to the first token."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 5), layout="constrained")
    for ax, w, title in zip(axes, (sliding, full), titles):
        w = to_numpy(w)
        T = w.shape[-1]
        im = ax.imshow(np.log10(np.maximum(w, 1e-6)), cmap="viridis", vmin=-6, vmax=0, interpolation="nearest")
        t = np.arange(T)
        ax.plot(t - window + 1, t, color="w", lw=0.8, ls="--")  # the band's lower edge: key t − W + 1
        ax.set_xlim(-0.5, T - 0.5)
        ax.set_ylim(T - 0.5, -0.5)
        ax.set_xlabel("key position")
        ax.set_ylabel("query position")
        ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=axes, label="log10 weight", shrink=0.8)
    return fig
