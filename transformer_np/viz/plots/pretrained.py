"""Chapter 7: a pretrained encoder (MiniLM) — head scores and sentence similarities."""

from __future__ import annotations

import matplotlib.pyplot as plt

from ...core.backend import to_numpy
from .base import heatmap


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
