"""Chapter 11: making it smaller — rounding grids, quantization errors, activation outliers, sparsity
patterns, perplexity against bits and sparsity."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from ...core.backend import to_numpy
from ...efficient.compress import method_label
from ...efficient.gptq import output_error
from .base import plain_log_ticks


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
    right: max|X_j| of every channel j of one layer's input as stems, the three largest marked with their values —
    the few outlier channels."""
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
    ax2.vlines(np.arange(c.size), 0, c, color="C0", lw=0.6)  # stems: one channel is one line, never lost
    for j in np.argsort(c)[-3:]:  # the three largest channels, marked and named
        ax2.plot(j, c[j], "o", color="C3", ms=4)
        ax2.annotate(f"{c[j]:,.0f} (j={j})", (j, c[j]), xytext=(4, -3), textcoords="offset points", fontsize=7)
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


KINDS = {"float16": 0, "bfloat16": 0, "float8_e4m3fn": 0, "float8_e5m2": 0, "w8a8": 2, "smoothquant": 2,
         "llm.int8": 2, "kv-int8": 2, "magnitude": 3, "magnitude-global": 3, "wanda": 3, "2:4": 3, "wanda-2:4": 3}
KIND_NAMES = ("float formats", "integer weights (RTN, GGUF, GPTQ, AWQ)", "activations and the KV cache", "pruning")


def kl_by_method(rows):
    """The low-variance view of compression: every row's mean KL divergence from float32 (log scale, bars ± 2
    standard errors), sorted, coloured by kind, its bits per weight in its label (rows from bench quality with
    ``kl_mean``).  A row within float32 rounding of the reference (KL < 1e-9: the weights' own grid) is marked
    at the axis."""
    rows = sorted((r for r in rows if "kl_mean" in r and r["method"] != "float32"), key=lambda r: r["kl_mean"])
    floor = min([r["kl_mean"] for r in rows if r["kl_mean"] >= 1e-9], default=1e-4) / 4
    fig, ax = plt.subplots(figsize=(8, 0.22 * len(rows) + 1.2), layout="constrained")
    for i, r in enumerate(rows):
        kind = KINDS.get(r["method"], 1)
        if r["kl_mean"] < 1e-9:
            ax.plot(floor, i, "<", color=f"C{kind}", ms=7)
            ax.annotate(f"KL {r['kl_mean']:.0e}: float32 rounding only", (floor, i), xytext=(8, -3),
                        textcoords="offset points", fontsize=7)
            continue
        ax.errorbar(r["kl_mean"], i, xerr=2 * r["kl_mean_se"], fmt="o", color=f"C{kind}", ms=4, capsize=2)
    ax.set_yticks(range(len(rows)), [f"{method_label(r)} · {r['bits_per_weight']:.2f} b" for r in rows], fontsize=7)
    ax.set_xscale("log")
    ax.set_xlim(floor / 2, None)
    ax.set_xlabel("mean KL(float32 ‖ compressed) [nats per token]")
    ax.legend(handles=[plt.Line2D([], [], color=f"C{k}", marker="o", ls="", label=n) for k, n in enumerate(KIND_NAMES)],
              fontsize=7, loc="lower right")
    ax.set_title("SmolLM2-135M: KL from float32 of every method (± 2 standard errors)", fontsize=10)
    return fig


def gptq_vs_rtn(w, named, hessian, title):
    """GPTQ's trade on one matrix w (C_in, C_out), {name: dequantized ŵ} for RTN and GPTQ on the same grid.  Left:
    each input row's RMS weight change (GPTQ moves the weights more, spreading each row's rounding error onto the
    rows after it); right: each output channel's error on the calibration inputs δ_jᵀ H δ_j / w_jᵀ H w_j, sorted
    (GPTQ's is lower: what it minimises)."""
    w = np.asarray(to_numpy(w), np.float64)
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 3.6), layout="constrained")
    signal = output_error(w, np.zeros_like(w), hessian)
    for i, (name, d) in enumerate(named.items()):
        d = to_numpy(d)
        ax.plot(np.sqrt(np.mean((d - w) ** 2, axis=1)), color=f"C{i}", lw=0.7, label=name)
        err = output_error(w, d, hessian)
        ax2.plot(np.sort(err / signal), color=f"C{i}", label=f"{name}: total {err.sum() / signal.sum():.2e}")
    ax.set_xlabel("input row i (the order GPTQ rounds them in)")
    ax.set_ylabel("RMS |w − ŵ| over the row")
    ax.set_title("Weight error: GPTQ moves the weights more", fontsize=10)
    ax.legend(fontsize=8)
    ax2.set_yscale("log")
    plain_log_ticks(ax2.yaxis)
    ax2.set_xlabel("output channel j (sorted)")
    ax2.set_ylabel("‖X δ_j‖² / ‖X w_j‖²")
    ax2.set_title("Output error on the calibration inputs: GPTQ's is lower", fontsize=10)
    ax2.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig


def awq_search(absmean, s, errors, title):
    """AWQ on one group of linears: left, each input channel's mean |X_j| on the calibration text (stems) and the
    scale s_j AWQ multiplies its weights by (line, right axis); right, the search — output error against α,
    α = 0 being round-to-nearest."""
    a, s = to_numpy(absmean), to_numpy(s)
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 3.6), layout="constrained")
    ax.vlines(np.arange(a.size), 0, a, color="grey", lw=0.6)
    ax.set_yscale("log")
    plain_log_ticks(ax.yaxis)
    ax.set_xlabel("input channel j")
    ax.set_ylabel("mean |X_j| (calibration)")
    twin = ax.twinx()
    twin.plot(s, color="C3", lw=0.8)
    twin.set_ylabel("AWQ scale s_j", color="C3")
    ax.set_title("Salient channels: large inputs get their weights scaled up", fontsize=10)
    alphas = sorted(errors)
    ax2.plot(alphas, [errors[x] for x in alphas], "o-", ms=3)
    best = min(errors, key=errors.get)
    ax2.plot(best, errors[best], "o", color="C3", ms=7,
             label=f"best α = {best:.2f}: {errors[best] / errors[0]:.2f}× RTN's")
    ax2.plot(0, errors[0], "s", color="C0", ms=7, label="α = 0: round-to-nearest")
    ax2.set_xlabel("α  (s_j ∝ mean|X_j|^α)")
    ax2.set_ylabel("Σ ‖X W − (X ⊘ s) RTN(diag(s) W)‖²")
    ax2.set_title("The search on the calibration rows", fontsize=10)
    ax2.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig


def q4_k_superblock(fields, title):
    """One Q4_K super-block drawn (``ggml_formats.q4_k_fields`` of one block): top, its 144 bytes by field; bottom,
    its 256 values x = d·s_j·q − dmin·m_j, each sub-block of 32 on its own grid of 16 levels (lines)."""
    d, dmin = float(to_numpy(fields["d"])[0, 0]), float(to_numpy(fields["dmin"])[0, 0])
    sc, mn, q = (to_numpy(fields[k])[0] for k in ("scales", "mins", "q"))
    fig, (top, ax) = plt.subplots(2, 1, figsize=(11, 4.6), layout="constrained", height_ratios=[1, 4])
    for (start, stop), name, color in (((0, 2), "d", "C3"), ((2, 4), "dmin", "C1"),
                                       ((4, 16), "8 scales s_j + 8 mins m_j, 6 bits each", "C2"),
                                       ((16, 144), "256 values q, 4 bits each (two a byte)", "C0")):
        top.barh(0, stop - start, left=start, color=color, edgecolor="white", lw=0.5)
        top.text((start + stop) / 2 if stop - start > 10 else stop + 0.5, 0, name, va="center",
                 ha="center" if stop - start > 10 else "left", fontsize=7,
                 color="white" if stop - start > 10 else "k")
    top.set_xlim(0, 144)
    top.set_yticks([])
    top.set_xlabel("byte")
    top.set_title(f"{title}: 144 bytes for 256 weights = 4.5 bits a weight (d = {d:.3g}, dmin = {dmin:.3g}, fp16)",
                  fontsize=10)
    for j in range(8):
        lo, step = -dmin * mn[j], d * sc[j]
        xs = np.arange(32 * j, 32 * j + 32)
        for k in range(16):
            ax.hlines(lo + step * k, xs[0] - 0.5, xs[-1] + 0.5, color="grey", lw=0.3)
        ax.plot(xs, lo + step * q[j].astype(np.float64), ".", color=f"C{j % 2}", ms=4)
        ax.text(xs[0] + 16, lo + step * 15, f"s={sc[j]:.0f}, m={mn[j]:.0f}", ha="center", va="bottom",
                fontsize=6.5)
        ax.axvline(xs[0] - 0.5, color="k", lw=0.4)
    ax.set_xlim(-0.5, 255.5)
    ax.set_xlabel("value in the super-block (8 sub-blocks of 32)")
    ax.set_ylabel("x = d·s_j·q − dmin·m_j")
    return fig


def paired_token_scores(scores, name):
    """Why the KL divergence is the low-variance signal (``scores``: quality.token_scores with a reference).  Left:
    each token's −log p under the reference against under ``name`` — the spread along the diagonal is how hard the
    text is (the same for both models, and what perplexity's standard error measures), the spread across it is
    what compression changed; right: the per-token KL divergence, never negative."""
    ref, nll, kl = (to_numpy(scores[k]) for k in ("ref_nll", "nll", "kl"))
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
    ax.plot(ref, nll, ".", ms=3, alpha=0.6)
    top = max(ref.max(), nll.max())
    ax.plot([0, top], [0, top], color="grey", lw=0.6)
    ax.set_xlabel("−log p(next token), float32")
    ax.set_ylabel(f"−log p(next token), {name}")
    ax.set_title(f"{len(ref)} tokens: std of −log p {ref.std():.2f}, of the difference {(nll - ref).std():.3f}",
                 fontsize=10)
    ax2.hist(np.log10(np.maximum(kl, 1e-8)), bins=50, color="C2")
    ax2.set_xlabel("log10 KL(float32 ‖ compressed) of one token [nats]")
    ax2.set_ylabel("tokens")
    ax2.set_title(f"Per-token KL: mean {kl.mean():.2e}, 99th percentile {np.percentile(kl, 99):.2e}", fontsize=10)
    return fig
