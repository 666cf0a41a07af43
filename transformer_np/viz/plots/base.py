"""The helpers every picture uses: plain numbers on log axes, one labelled heatmap, saving a figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import LogFormatter

from ...core.backend import to_numpy


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


def save(fig, path):
    """Write a PNG without volatile metadata (same bytes for the same picture), then close the figure."""
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
