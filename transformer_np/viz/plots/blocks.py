"""Chapters 4–5: the residual stream, gradients, layer norm, activations, and the encoder-decoder's attention."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ...core.backend import to_numpy
from ...core.nn import gelu, relu
from .base import heatmap


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
