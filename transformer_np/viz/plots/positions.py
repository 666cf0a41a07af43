"""Chapter 1: the sinusoidal positional encoding — as a heatmap, as waves, and its dot products."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ...core.backend import to_numpy
from .base import heatmap


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
