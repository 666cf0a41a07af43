"""Chapter 12: cost at scale — the roofline, partitioning layouts' communication and owners, operator fusion."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from .base import plain_log_ticks


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
    count]}), against the chip count: Pope et al.'s Figure 2/3 from the formulas of efficient.simulated_partitioning."""
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
