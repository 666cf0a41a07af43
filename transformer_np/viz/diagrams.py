"""Architecture diagrams, drawn with matplotlib boxes and arrows: every arrow is labelled with the shape of the
array it carries, in this package's shape names (B batch, S source and T target length, C = d_model, H heads,
D = C/H, F = d_ff, V vocabulary, L layers, t tokens already cached).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.patches import FancyBboxPatch, Rectangle

# one colour per kind of box, as the paper's Figure 1 colours them
COLOURS = {"attn": "#f6d8a8", "norm": "#f4f1b5", "ffn": "#bfe3f2", "embed": "#f7c6c6", "out": "#d8d0f0",
           "io": "#ffffff", "cache": "#c9ecc9"}


def _box(ax, x, y, w, h, text, kind, fontsize=8.5):
    """A rounded box centred at (x, y)."""
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.08",
                                fc=COLOURS[kind], ec="black", lw=0.8))
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize)


def _arrow(ax, start, end, label=None, side="right", fontsize=7.5, colour="black", style="-|>"):
    """An arrow from start to end, with the shape it carries written beside its middle."""
    ax.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle=style, lw=0.9, color=colour,
                                                           shrinkA=0, shrinkB=0))
    if label:
        mx, my = (start[0] + end[0]) / 2, (start[1] + end[1]) / 2
        dx = 0.08 if side == "right" else -0.08
        ax.text(mx + dx, my, label, ha="left" if side == "right" else "right", va="center", fontsize=fontsize,
                color="#333333", family="monospace")


def _canvas(width, height, xlim, ylim, title):
    fig, ax = plt.subplots(figsize=(width, height), layout="constrained")
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.axis("off")
    ax.set_title(title, fontsize=11)
    return fig, ax


def transformer_architecture():
    """The paper's Figure 1, redrawn: the encoder-decoder with the shape of every array that flows."""
    fig, ax = _canvas(11, 10.5, (0, 11), (-0.4, 13.2),
                      "The Transformer (Vaswani et al. 2017, Figure 1) with this package's shapes")
    w, h = 3.2, 0.62
    # encoder column (x = 2.6) and decoder column (x = 7.6), bottom to top
    ex, dx = 2.6, 7.6
    ax.text(ex, 0.0, "source ids  (B, S)", ha="center", fontsize=9, family="monospace")
    ax.text(dx, 0.0, "target ids, shifted right: <s> y₁ … y_{T-1}  (B, T)", ha="center", fontsize=9,
            family="monospace")
    for x, ids in ((ex, "(B, S)"), (dx, "(B, T)")):
        _box(ax, x, 1.2, w, h, "Embedding · √C  +  PE[pos]\n(embed)", "embed")
        _arrow(ax, (x, 0.3), (x, 1.2 - h / 2), ids)
    # encoder layer: self-attention, add & norm, FFN, add & norm
    ax.add_patch(Rectangle((ex - 1.9, 2.2), 3.8, 4.7, fill=False, ls="--", lw=0.8))
    ax.text(ex - 2.0, 4.5, "L×", ha="right", fontsize=12, weight="bold")
    enc = [(2.8, "Multi-head self-attention\nQ, K, V: (B, H, S, D)", "attn"), (3.9, "Add & LayerNorm", "norm"),
           (5.0, "Feed-forward ReLU(xW₁+b₁)W₂+b₂\nhidden (B, S, F)", "ffn"), (6.1, "Add & LayerNorm", "norm")]
    prev = 1.2 + h / 2
    for y, text, kind in enc:
        _box(ax, ex, y, w, h, text, kind)
        _arrow(ax, (ex, prev), (ex, y - h / 2), "(B, S, C)")
        prev = y + h / 2
    _box(ax, ex, 7.6, w, h, "final LayerNorm\n(nn.Transformer's; final_norm)", "norm")
    _arrow(ax, (ex, prev), (ex, 7.6 - h / 2), "(B, S, C)")
    # memory to cross-attention
    ax.text(ex, 8.55, "memory  (B, S, C)", ha="center", fontsize=9, family="monospace", weight="bold")
    _arrow(ax, (ex, 7.6 + h / 2), (ex, 8.35))
    # decoder layer
    ax.add_patch(Rectangle((dx - 1.9, 2.2), 3.8, 6.9, fill=False, ls="--", lw=0.8))
    ax.text(dx + 2.0, 5.6, "×L", ha="left", fontsize=12, weight="bold")
    dec = [(2.8, "Masked multi-head self-attention\ncausal mask (T, T)", "attn"), (3.9, "Add & LayerNorm", "norm"),
           (5.0, "Cross-attention: Q (B, H, T, D)\nK, V from memory (B, H, S, D)", "attn"),
           (6.1, "Add & LayerNorm", "norm"), (7.2, "Feed-forward\nhidden (B, T, F)", "ffn"),
           (8.3, "Add & LayerNorm", "norm")]
    prev = 1.2 + h / 2
    for y, text, kind in dec:
        _box(ax, dx, y, w, h, text, kind)
        _arrow(ax, (dx, prev), (dx, y - h / 2), "(B, T, C)")
        prev = y + h / 2
    # memory feeds every decoder layer's cross-attention (keys and values)
    ax.annotate("", xy=(dx - w / 2, 5.0), xytext=(ex + 1.0, 8.55),
                arrowprops=dict(arrowstyle="-|>", lw=1.2, color="#a05a00", connectionstyle="arc3,rad=0.25"))
    ax.text(4.0, 9.0, "to the keys and values of every\ndecoder layer's cross-attention:\n(B, S, C) → (B, H, S, D)",
            fontsize=7.5, color="#a05a00", ha="center", va="bottom")
    # residual connections, drawn beside each sublayer
    for x, ys in ((ex, (2.8, 5.0)), (dx, (2.8, 5.0, 7.2))):
        for y in ys:
            ax.annotate("", xy=(x + w / 2, y + 1.1), xytext=(x + w / 2, y - 0.55),
                        arrowprops=dict(arrowstyle="-|>", lw=0.7, color="grey", connectionstyle="arc3,rad=-0.6"))
    ax.text(ex + 2.0, 2.6, "grey: the residual\nx + f(x) around\neach sublayer", fontsize=7, color="grey")
    _box(ax, dx, 9.8, w, h, "final LayerNorm, then Linear C → V\n(output_logits)", "out")
    _arrow(ax, (dx, 8.3 + h / 2), (dx, 9.8 - h / 2), "(B, T, C)")
    _box(ax, dx, 11.0, w, h, "softmax over V", "out")
    _arrow(ax, (dx, 9.8 + h / 2), (dx, 11.0 - h / 2), "logits (B, T, V)")
    ax.text(dx, 12.1, "next-token probabilities  (B, T, V)", ha="center", fontsize=9, family="monospace")
    _arrow(ax, (dx, 11.0 + h / 2), (dx, 11.9))
    ax.text(0.1, 12.6, "post-LN, as in the paper: LN(x + Sublayer(x)); dropout after each sublayer and on the\n"
            "embeddings in training. With tie_embeddings the Linear is Eᵀ, the embedding table transposed.",
            fontsize=8, va="top")
    return fig


def residual_blocks():
    """One sublayer with its residual, post-LN (the paper) and pre-LN (GPT-2, Llama) side by side."""
    fig, ax = _canvas(10, 6.0, (0, 10), (-1.3, 6.4), "Where the layer norm goes: post-LN vs pre-LN")
    w, h = 2.6, 0.6
    for x, title, order, note in (
            (2.5, "post-LN (the paper):  LN(x + f(x))", ("f: attention or FFN", "+", "LayerNorm"),
             "the residual path passes through every LN:\nf = 0 gives LN(x), not x"),
            (7.5, "pre-LN:  x + f(LN(x))", ("LayerNorm", "f: attention or FFN", "+"),
             "an untouched path from input to output:\nf = 0 gives x; a final LN ends the stack")):
        ax.text(x, 6.05, title, ha="center", fontsize=10, weight="bold")
        ax.text(x, 0.05, "x  (B, T, C)", ha="center", fontsize=9, family="monospace")
        ys = (1.6, 3.0, 4.4)
        prev = 0.35
        for y, text in zip(ys, order):
            if text == "+":
                ax.add_patch(plt.Circle((x, y), 0.25, fc="white", ec="black"))
                ax.text(x, y, "+", ha="center", va="center", fontsize=12)
                _arrow(ax, (x, prev), (x, y - 0.25), "(B, T, C)")
                prev = y + 0.25
            else:
                _box(ax, x, y, w, h, text, "norm" if text == "LayerNorm" else "attn")
                _arrow(ax, (x, prev), (x, y - h / 2), "(B, T, C)")
                prev = y + h / 2
        _arrow(ax, (x, prev), (x, 5.6), "(B, T, C)")
        plus_y = ys[order.index("+")]
        # the residual: from the input, around the sublayer (and the LN in pre-LN), into the +
        ax.plot([x, x - 1.9, x - 1.9], [0.7, 0.7, plus_y], color="#2a7", lw=1.5)
        _arrow(ax, (x - 1.9, plus_y), (x - 0.25, plus_y), colour="#2a7")
        ax.text(x - 1.95, (0.7 + plus_y) / 2, "residual x", rotation=90, ha="right", va="center", fontsize=8,
                color="#2a7")
        ax.text(x, -0.75, note, fontsize=8, ha="center", va="center", color="#444444")
    return fig


def kv_cache_flow(t=5):
    """One decoding step with the KV cache: the new token's q, k, v; k and v appended; q attends over t + 1."""
    fig, ax = _canvas(11, 5.6, (0, 11.2), (0, 6.4),
                      f"One decoding step with the KV cache (token t = {t} arriving; one layer shown, L in all)")
    h = 0.62
    _box(ax, 1.1, 5.5, 1.6, h, "new token id\n(B, 1)", "io")
    _box(ax, 1.1, 4.2, 1.6, h, "embed + PE[t]", "embed")
    _arrow(ax, (1.1, 5.5 - h / 2), (1.1, 4.2 + h / 2))
    _box(ax, 3.3, 4.2, 1.9, h, "x W^Q, x W^K, x W^V", "attn")
    _arrow(ax, (1.9, 4.2), (3.3 - 0.95, 4.2))
    ax.text(2.1, 4.35, "(B, 1, C)", fontsize=7, family="monospace", va="bottom")
    for y, name in ((5.5, "q"), (4.2, "k"), (2.9, "v")):  # the new token's query, key and value
        _box(ax, 5.3, y, 1.3, 0.5, f"{name}  (B, H, 1, D)", "attn", fontsize=7.5)
        _arrow(ax, (3.3 + 0.95, 4.2), (5.3 - 0.65, y))
    x0, cw = 6.8, 0.3  # the cache: t rows kept from earlier steps plus the row written now
    for y, name in ((4.2, "K"), (2.9, "V")):
        for i in range(t + 1):
            ax.add_patch(Rectangle((x0 + i * cw, y - 0.25), cw, 0.5, fc=COLOURS["cache"] if i < t else "#f6d8a8",
                                   ec="black", lw=0.6))
        ax.text(x0 + (t + 1) * cw / 2, y - 0.32, f"{name} cache (B, H, t+1, D)", fontsize=7.5, ha="center",
                va="top")
        _arrow(ax, (5.3 + 0.65, y), (x0, y))
        ax.text(6.37, y + 0.06, "append", fontsize=6.5, ha="center", va="bottom")
    ax.text(x0, 1.75, f"green: the t = {t} rows kept from earlier steps\n(never recomputed); orange: the row "
            "written now", fontsize=7.5)
    xs = x0 + (t + 1) * cw / 2
    _box(ax, xs, 5.5, 2.6, 0.55, "softmax(q Kᵀ / √D)\n(B, H, 1, t+1)", "attn", fontsize=7.5)
    _arrow(ax, (5.95, 5.5), (xs - 1.3, 5.5))
    _arrow(ax, (xs, 4.2 + 0.25), (xs, 5.5 - 0.28))
    _box(ax, 10.2, 4.2, 1.5, h, "· V, merge heads,\n· W^O", "attn", fontsize=7.5)
    _arrow(ax, (xs + 1.3, 5.5), (10.2, 4.2 + h / 2))
    _arrow(ax, (x0 + (t + 1) * cw, 2.9), (10.2 - 0.4, 4.2 - h / 2))
    _box(ax, 10.2, 1.0, 1.5, h, "… L layers, then\nlogits (B, 1, V)", "out", fontsize=7.5)
    _arrow(ax, (10.2, 4.2 - h / 2), (10.2, 1.0 + h / 2))
    ax.text(10.3, 2.6, "(B, 1, C)", fontsize=7, family="monospace")
    # the chosen token goes round again
    ax.plot([10.2 - 0.75, 0.15, 0.15], [1.0, 1.0, 5.5], color="grey", lw=0.8, ls="--")
    _arrow(ax, (0.15, 5.5), (1.1 - 0.8, 5.5), colour="grey")
    ax.text(4.5, 0.65, "choose the next token (greedy, sample, beam) and feed it back", fontsize=8, color="grey",
            ha="center")
    ax.text(0.4, 2.6, "per step: every weight once, the cache's\n2·L·B·H_kv·(t+1)·D numbers, one query\n"
            "row of each attention; without the cache\nall t+1 tokens are recomputed", fontsize=7.5, va="center")
    return fig


def multi_head_shapes(B=1, T=6, C=16, H=4):
    """Multi-head attention, by shape: the C columns of Q split into H heads of D columns, attended in one
    batched matmul, and concatenated back before W^O mixes them."""
    D = C // H
    fig, ax = _canvas(13, 3.0, (0, 15), (0.6, 2.9),
                      f"Multi-head attention: columns split into heads (B = {B}, T = {T}, C = {C}, H = {H}, D = {D})")
    cell = 0.13
    colours = [f"C{i}" for i in range(H)]

    def matrix(x0, y0, rows, cols, colour_of_col, label, below):
        for c in range(cols):
            ax.add_patch(Rectangle((x0 + c * cell, y0), cell, rows * cell, fc=colour_of_col(c), alpha=0.55,
                                   ec="white", lw=0.3))
        ax.add_patch(Rectangle((x0, y0), cols * cell, rows * cell, fill=False, ec="black", lw=0.7))
        ax.text(x0 + cols * cell / 2, y0 + rows * cell + 0.12, label, ha="center", fontsize=8, family="monospace")
        ax.text(x0 + cols * cell / 2, y0 - 0.15, below, ha="center", va="top", fontsize=7.5)

    y0 = 1.6
    matrix(0.2, y0, T, C, lambda c: colours[c // D], "Q = x W^Q", f"(B, T, C)\n{T} rows × {C} columns;\n"
           f"columns hD … (h+1)D−1\nbelong to head h")
    ax.annotate("", xy=(3.3, y0 + 0.4), xytext=(2.5, y0 + 0.4), arrowprops=dict(arrowstyle="-|>"))
    ax.text(2.9, y0 + 0.55, "split_heads", ha="center", fontsize=7.5)
    ax.text(2.9, y0 + 0.05, "reshape\n(B,T,H,D)\n→ transpose", ha="center", va="top", fontsize=6.5)
    for h in range(H):
        matrix(3.4 + h * (D * cell + 0.12), y0, T, D, lambda c, h=h: colours[h], f"h={h}", "")
    ax.text(3.4 + H * (D * cell + 0.12) / 2, y0 - 0.15, "(B, H, T, D)", ha="center", va="top", fontsize=7.5)
    x = 3.4 + H * (D * cell + 0.12)
    ax.annotate("", xy=(x + 1.7, y0 + 0.4), xytext=(x + 0.1, y0 + 0.4), arrowprops=dict(arrowstyle="-|>"))
    ax.text(x + 0.9, y0 + 0.55, "softmax(QKᵀ/√D)V", ha="center", fontsize=7.5)
    ax.text(x + 0.9, y0 + 0.05, "all heads in one\nbatched matmul:\nweights (B,H,T,T)", ha="center", va="top",
            fontsize=6.5)
    x += 1.8
    for h in range(H):
        matrix(x + h * (D * cell + 0.12), y0, T, D, lambda c, h=h: colours[h], f"head {h}", "")
    ax.text(x + H * (D * cell + 0.12) / 2, y0 - 0.15, "(B, H, T, D)", ha="center", va="top", fontsize=7.5)
    x += H * (D * cell + 0.12)
    ax.annotate("", xy=(x + 1.0, y0 + 0.4), xytext=(x + 0.1, y0 + 0.4), arrowprops=dict(arrowstyle="-|>"))
    ax.text(x + 0.55, y0 + 0.55, "merge_heads", ha="center", fontsize=7.5)
    ax.text(x + 0.55, y0 + 0.05, "Concat", ha="center", va="top", fontsize=6.5)
    x += 1.1
    matrix(x, y0, T, C, lambda c: colours[c // D], "Concat(heads)", "(B, T, H·D) = (B, T, C)")
    x += C * cell + 0.2
    ax.annotate("", xy=(x + 0.6, y0 + 0.4), xytext=(x, y0 + 0.4), arrowprops=dict(arrowstyle="-|>"))
    ax.text(x + 0.3, y0 + 0.55, "· W^O", ha="center", fontsize=7.5)
    ax.text(x + 0.3, y0 + 0.05, "mixes\nheads", ha="center", va="top", fontsize=6.5)
    x += 0.7
    matrix(x, y0, T, C, lambda c: "grey", "out", "(B, T, C)")
    ax.set_xlim(0, x + C * cell + 0.2)
    return fig
