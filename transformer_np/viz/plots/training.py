"""Chapter 8: the learning-rate schedule, training curves, label smoothing, and what each hyper-parameter buys."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import FuncFormatter, NullFormatter

from ...training.optim import noam_lr
from .base import plain_log_ticks


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
            if r["n_kv_heads"] != r["n_heads"]:
                marker = "*"
            elif r["d_ff"] != 2 * r["d_model"]:
                marker = "P"
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
                plt.Line2D([], [], color="k", marker="*", ls="", label="H_kv = 1"),
                plt.Line2D([], [], color="k", marker="P", ls="", label="F = 4C"),
                plt.Line2D([], [], color="k", marker="o", mfc="none", ls="", label="2 layers (open)"),
                plt.Line2D([], [], color="grey", marker=".", ls="", label="other seeds")]
    fig.legend(handles=handles, fontsize=7, loc="outside right center")
    fig.suptitle(title, fontsize=10)
    return fig


def lm_runs(runs, live=None):
    """Language-model runs side by side: {name: {"loss": every step's training loss, "val": [(step, held-out
    loss)]}}, the training loss smoothed (thin) and the held-out loss (dots) per run, in nats per token; ``live``
    (a history of the same kind) drawn over them in black: a shorter run of one of them, made in the notebook."""
    fig, ax = plt.subplots(figsize=(7, 3.8), layout="constrained")
    for i, (name, run) in enumerate(runs.items()):
        steps, smooth, k = _smoothed_loss({"step": np.arange(1, len(run["loss"]) + 1), "loss": run["loss"]})
        ax.plot(steps, smooth, color=f"C{i}", lw=0.8, alpha=0.7, label=f"{name}: training (mean of {k} steps)")
        s, v = zip(*run["val"])
        ax.plot(s, v, "o-", color=f"C{i}", ms=3, label=f"{name}: held-out text")
    if live is not None:
        s, v = zip(*live["val"])
        ax.plot(s, v, "x", color="black", ms=7, label="this notebook's run (held-out)")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats per token)")
    ax.legend(fontsize=7)
    ax.set_title("Next-token loss: training windows and held-out text")
    return fig
