"""Chapter 10: serving — the online softmax, memory against length, paged block tables, batching timelines,
speculative tokens."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ...core.backend import to_numpy
from ...efficient.blockwise import blockwise_attention
from .base import plain_log_ticks


def online_softmax(scores, block):
    """The online softmax of one row of scores, tile by tile: the running maximum m, the running normaliser l
    (rescaled whenever m grows), against the exact ones — the trace blockwise attention leaves when its one query
    (q = 1, d = 1) meets the scores as keys (k = the scores as a column), ``block`` keys a tile."""
    s = to_numpy(scores).reshape(-1).astype(np.float64)
    trace = []
    blockwise_attention(np.ones((1, 1)), s[:, None], np.zeros((len(s), 1)), block_q=1, block_k=block, trace=trace)
    edges = [stop for _, stop, _, _ in trace]
    ms = [float(np.asarray(m).reshape(())) for _, _, m, _ in trace]
    ells = [float(np.asarray(ell).reshape(())) for _, _, _, ell in trace]
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
    plain_log_ticks(ax.xaxis)
    plain_log_ticks(ax.yaxis)
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


def draft_head_training(curve, held_out_kl=None, held_out_top1=None):
    """The draft head's distillation, by step (``curve``: the means over stretches of steps its file keeps): the KL
    from the teacher's next-token distribution to the student's, and how often their most likely tokens agree —
    with the held-out texts' values after training, dashed."""
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 3.4), layout="constrained")
    ax.plot(curve["step"], curve["kl"], label="training texts")
    ax2.plot(curve["step"], curve["top1"], label="training texts")
    if held_out_kl is not None:
        ax.axhline(held_out_kl, color="C3", ls="--", label=f"held-out texts, after training: {held_out_kl:.2f}")
        ax2.axhline(held_out_top1, color="C3", ls="--", label=f"held-out texts, after training: {held_out_top1:.0%}")
    ax.set_xlabel("step (one text each)")
    ax.set_ylabel("KL(teacher ‖ student), nats")
    ax.set_title("Distillation loss (the KL term)")
    ax2.set_xlabel("step (one text each)")
    ax2.set_ylabel("student's top token = teacher's")
    ax2.set_ylim(0, 1)
    ax2.set_title("Agreement on the next token (teacher forcing)")
    for a in (ax, ax2):
        a.legend(fontsize=8)
    return fig


def acceptance_by_position(alphas, alpha):
    """α_i, the acceptance of the draft at position i given the ones before it were accepted, as bars — against
    the one overall rate α that the independence formula assumes at every position (dashed)."""
    fig, ax = plt.subplots(figsize=(5, 3), layout="constrained")
    i = np.arange(1, len(alphas) + 1)
    ax.bar(i, [0 if a is None else a for a in alphas], color="C2", label="measured α_i")
    ax.axhline(alpha, color="C3", ls="--", label=f"overall α = {alpha:.2f}")
    ax.set_xticks(i)
    ax.set_xlabel("draft position i in a pass")
    ax.set_ylabel("accepted | the ones before were")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title("Acceptance by position", fontsize=10)
    return fig


def prefix_tree(cached, held=(), title="The prefix cache: whole blocks keyed by their tokens and the block before"):
    """The prefix cache as a tree: ``cached`` — {(parent uid, tokens): (uid, block)} — each block a node under the
    block before it (its parent: -1 is the root, a prompt's start), labelled with its block id and tokens;
    ``held``: blocks a running request holds (drawn filled), the others only kept for later prompts."""
    children = {}
    for (parent, tokens), (uid, block) in cached.items():
        children.setdefault(parent, []).append((uid, block, tokens))
    pos, rows = {}, [0]

    def place(parent, depth):
        for uid, block, tokens in sorted(children.get(parent, []), key=lambda c: c[0]):
            pos[uid] = (depth, rows[0], block, tokens, parent)
            place(uid, depth + 1)
            if not children.get(uid):
                rows[0] += 1

    place(-1, 0)
    fig, ax = plt.subplots(figsize=(10, 0.6 * max(rows[0], 1) + 1.2), layout="constrained")
    for x, y, block, tokens, parent in pos.values():
        if parent in pos:
            px, py = pos[parent][:2]
            ax.plot([px + 0.35, x - 0.35], [py, y], color="0.5", lw=1)
        kept = block not in held
        ax.text(x, y, f"block {block}\n{' '.join(map(str, tokens))}", ha="center", va="center", fontsize=7,
                bbox=dict(boxstyle="round", facecolor="white" if kept else "C0", alpha=0.9 if kept else 0.35,
                          edgecolor="C0"))
    ax.set_xlim(-0.6, max((p[0] for p in pos.values()), default=0) + 0.6)
    ax.set_ylim(max(rows[0], 1) - 0.5, -0.5)
    ax.axis("off")
    ax.set_title(title + " (filled: held by a running request)", fontsize=10)
    return fig


def prefill_timeline(decode_counts, prefills, budget=None, title="A step's tokens: decodes, then prefill chunks"):
    """Tokens computed at each engine step: ``decode_counts`` (decoding requests, one token each) and
    ``prefills`` ([(request, tokens)] per step) stacked; ``budget``: the step's token budget (chunked prefill)."""
    steps = np.arange(len(decode_counts))
    fig, ax = plt.subplots(figsize=(10, 3), layout="constrained")
    ax.bar(steps, decode_counts, color="C0", label="decode tokens (one per running request)")
    bottom = np.asarray(decode_counts, float)
    requests = sorted({r for step in prefills for r, _ in step})
    for i, r in enumerate(requests):
        n = np.array([sum(k for q, k in step if q == r) for step in prefills], float)
        ax.bar(steps, n, bottom=bottom, color=plt.cm.tab10((i + 1) % 10), label=f"prefill of request {r}")
        bottom += n
    if budget is not None:
        ax.axhline(budget, color="k", ls="--", lw=1, label=f"step budget ({budget} tokens)")
    ax.set_xlabel("engine step")
    ax.set_ylabel("tokens computed")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    return fig


def latency_percentiles(named, title="Latency percentiles of an arrival workload"):
    """One panel per latency — time to first token, time per output token, end to end — with the p50/p90/p99 of
    each named simulation (``named``: {name: simulate's result})."""
    keys = [("ttft_s", "time to first token"), ("tpot_s", "time per output token"), ("latency_s", "end to end")]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2), layout="constrained")
    width = 0.8 / max(len(named), 1)
    for ax, (key, label) in zip(axes, keys):
        for i, (name, sim) in enumerate(named.items()):
            values = [1e3 * (sim[key][p] or 0.0) for p in (50, 90, 99)]
            ax.bar(np.arange(3) + i * width, values, width, label=name)
        ax.set_xticks(np.arange(3) + width * (len(named) - 1) / 2, ["p50", "p90", "p99"])
        ax.set_ylabel("ms")
        ax.set_title(label, fontsize=10)
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig
