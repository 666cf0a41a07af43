"""``bench quality``: every compression method against float32, on every real model.

- SmolLM2-135M-Instruct: perplexity and the KL divergence from float32's next-token distributions (mean, 99th
  percentile) and top-1 agreement, each with its standard error, on the shipped evaluation text (23,294 tokens
  by default; ``--text FILE`` for another, ``--stride`` for overlapping windows), resident weight bytes, bits per
  compressed weight, greedy decoding speed.  Every 4-bit row says what it measures (``measures``): SmolLM2's
  float32 weights are its file's Q4_1 blocks, so a 4-bit grid other than Q4_1 measures the mismatch of two grids
  as much as 4-bit quantization; q4_1 re-quantizes onto the grid the weights lie on (KL 0);
- all-MiniLM-L6-v2: cosine of each shipped search sentence's embedding to float32's, and whether each sentence's
  nearest neighbour is still the same (top-1 retrieval agreement);
- the three task models trained here: held-out accuracy.

Figures (with ``--plot FOLDER``: bench_quality_*.png): perplexity against bits per weight, every method's KL
divergence sorted (± 2 standard errors, its bits in its label), perplexity against sparsity, and the relative
weight error of every layer under int8 and int4.  Numbers, not tests.
"""

from __future__ import annotations

import os
import time
import warnings

import matplotlib
import numpy as np

from ...core.tree import flatten
from ...efficient import compress as C
from ...efficient import quality
from ...efficient import quantize as Q
from ...pretrained.registry import load
from ...pretrained.sentences import SEARCH_SENTENCES
from ...training.loop import evaluate
from ...training.shipped import load_trained
from ...viz import plots
from ..llm import load_llm
from ..options import progress_bar
from .table import Column, header_line, print_table, row_line

SMOLLM2_ROWS = [("float32", {}), ("bfloat16", {}), ("float16", {}), ("float8_e4m3fn", {}), ("float8_e5m2", {}),
                ("int8", {}), ("int8", {"group_size": 32}), ("q8_0", {}), ("gguf", {}), ("q4_1", {}), ("q4_0", {}),
                ("q5_0", {}), ("int4", {}), ("int4", {"group_size": 64}), ("int4", {"group_size": 32}),
                ("int4", {"group_size": 32, "asymmetric": True}), ("int4", {"bits": 3, "group_size": 64}),
                ("int4", {"bits": 3, "group_size": 32}),
                # groups of 64, not the usual 128: SmolLM2's C = 576 = 4.5 × 128
                *[(m, {"bits": b, "group_size": g}) for b in (4, 3) for g in (64, 32) for m in ("gptq", "awq")],
                ("w8a8", {}), ("smoothquant", {}), ("llm.int8", {}), ("kv-int8", {}),
                ("magnitude", {"sparsity": 0.25}), ("magnitude", {"sparsity": 0.5}),
                ("magnitude-global", {"sparsity": 0.5}), ("wanda", {"sparsity": 0.25}), ("wanda", {"sparsity": 0.5}),
                ("2:4", {}), ("wanda-2:4", {})]
SMALL_ROWS = [("float32", {}), ("bfloat16", {}), ("float8_e4m3fn", {}), ("int8", {}), ("int4", {"group_size": 32}),
              ("w8a8", {}), ("magnitude", {"sparsity": 0.5})]
# MiniLM's C = 384 and 4C = 1,536 are multiples of 128: GPTQ and AWQ against RTN in the usual groups of 128
MINILM_ROWS = SMALL_ROWS + [(m, {"bits": b, "group_size": 128}) for b in (4, 3) for m in ("int4", "gptq", "awq")]


# what a 4-bit row measures on SmolLM2, whose float32 weights are the Q4_1 grid of its file, widened (and what a
# 3-bit row measures needs no saying: no 3-bit grid holds them)
MEASURES = {"q4_1": "the weights' own grid: no error", "gguf": "the file's own blocks: no error",
            "int4": "another 4-bit grid: grid mismatch as much as quantization",
            "q4_0": "another 4-bit grid: grid mismatch as much as quantization",
            "gptq": "another grid, rounding errors compensated", "awq": "another grid, salient channels scaled",
            # what two recipes do that their papers do otherwise, said in the table
            "smoothquant": "smoothed: the inputs of Q/K/V, gate/up (into the norms) and down (into up); not W_O's",
            "llm.int8": "outlier columns in float, with W's int8 rows dequantized (the paper keeps those rows fp16)"}


REFERENCE_BYTES = 6e9  # the most float32 reference logits kept in memory (the shipped text's: 4.6 GB)


def _plus_minus(key, spec):
    return lambda r: None if key not in r else f"{format(r[key], spec)} ± {format(r[key + '_se'], spec)}"


SMOLLM2_COLUMNS = [Column("  method", lambda r: "  " + C.method_label(r), 38, align="<"),
                   Column("perplexity", _plus_minus("perplexity", ".3f"), 15), Column("change", "perplexity_change",
                                                                                       8, "+.2%"),
                   Column("KL mean", _plus_minus("kl_mean", ".5f"), 19), Column("KL p99", "kl_p99", 8, ".4f"),
                   Column("top-1", "top1", 6, ".3f"), Column("bits/weight", "bits_per_weight", 11, ".2f"),
                   Column("weights MB", lambda r: r["weight_bytes"] / 1e6, 10, ".1f"),
                   Column("decode tok/s", "decode_tok_s", 12, ".1f"), Column("[s]", "seconds", 5, ".0f")]
MINILM_COLUMNS = [Column("  method", lambda r: "  " + C.method_label(r), 32, align="<"),
                  Column("cosine min", "cosine_min", 10, ".5f"),
                  Column("cosine mean", _plus_minus("cosine_mean", ".5f"), 19),
                  Column("top-1 agreement", "top1_agreement", 15, ".3f")]


def bench_smollm2(tokens=None, calibration_tokens=2048, rows=SMOLLM2_ROWS, print_fn=print, text=None, stride=None):
    model = load_llm("smollm2")
    ids = model.tokenize(quality.eval_text() if text is None else text)[:tokens]
    calibration = model.tokenize(quality.calibration_text())[:calibration_tokens]
    with progress_bar(len(quality.windows(len(calibration))), "calibration", "window") as progress:
        recorders = quality.record_activations(model, calibration, hessian=any(m == "gptq" for m, _ in rows),
                                               keep_rows=512 if any(m == "awq" for m, _ in rows) else 0,
                                               progress=progress)
    n_windows = len(quality.windows(len(ids), stride=stride))
    reference = model  # float32's logits kept between rows when they fit: one pass a row instead of two
    if len(ids) * model.config.vocab_size * 4 <= REFERENCE_BYTES:
        with progress_bar(n_windows, "float32 reference", "window") as progress:
            reference = quality.ReferenceLogits(model, ids, stride=stride, progress=progress)
    out, base = [], None
    print_fn(header_line(SMOLLM2_COLUMNS))
    for method, options in rows:
        t0 = time.perf_counter()
        with progress_bar(n_windows, C.method_label({"method": method, **options}), "window") as progress:
            if method == "gguf":
                kept = load_llm("smollm2", "q4")
                row = quality.measure(kept, "float32", ids, stride=stride, reference=reference, progress=progress) | {
                    "method": "gguf"}
            else:
                row = quality.measure(model, method, ids, recorders, stride=stride, reference=reference,
                                      progress=progress, **options)
        if method in MEASURES and (method not in ("int4", "gptq", "awq") or options.get("bits", 4) == 4):
            row["measures"] = MEASURES[method]
        base = base or row
        row["perplexity_change"] = row["perplexity"] / base["perplexity"] - 1
        row["seconds"] = time.perf_counter() - t0
        out.append(row)
        print_fn(row_line(row, SMOLLM2_COLUMNS))  # as it is measured: a row takes minutes
    return out, model, recorders


def minilm_recorders(model, paragraphs=256, hessian=True, keep_rows=512):
    """MiniLM's activation recorders over the first ``paragraphs`` paragraphs of the calibration text (never the
    search sentences it is measured on), one at a time so that no padding row is recorded."""
    texts = [p.strip() for p in quality.calibration_text().split("\n\n") if len(p.strip()) >= 40][:paragraphs]

    def run(wrapped):
        kept, model.params = model.params, wrapped
        try:
            with warnings.catch_warnings():  # a long paragraph is cut to the model's 256 tokens: meant
                warnings.simplefilter("ignore", UserWarning)
                model.encode(texts, batch_size=1)
        finally:
            model.params = kept

    return quality.record_with(model.params, run, hessian=hessian, keep_rows=keep_rows)


def bench_minilm(rows=MINILM_ROWS, print_fn=print):
    model = load("minilm")
    params = model.params
    ref = model.encode(SEARCH_SENTENCES)
    nearest = lambda e: np.argmax(e @ e.T - 2 * np.eye(len(e)), axis=1)  # noqa: E731 - the closest other sentence
    calibrated = {m for m, _ in rows} & set(C.NEEDS_CALIBRATION)
    recorders = minilm_recorders(model, hessian="gptq" in calibrated, keep_rows=512 * ("awq" in calibrated)) \
        if calibrated else None
    out = []
    for method, options in rows:
        model.params = C.compress(params, method, recorders=recorders, **options)
        try:
            e = model.encode(SEARCH_SENTENCES)
        finally:
            model.params = params
        cos = (e * ref).sum(-1) / np.linalg.norm(e, axis=-1) / np.linalg.norm(ref, axis=-1)
        row = {"method": method, **options, "cosine_min": float(cos.min()),
               **dict(zip(("cosine_mean", "cosine_mean_se"), quality.mean_and_se(cos))),
               "top1_agreement": float(np.mean(nearest(e) == nearest(ref)))}
        out.append(row)
    print_table(out, MINILM_COLUMNS, print_fn)
    return out


def bench_tasks(rows=SMALL_ROWS, n=500, print_fn=print):
    out = []
    names = ("reverse", "dates", "sentiment")
    for name in names:
        task, params, _, _ = load_trained(name)
        examples = task.test[:n]
        for method, options in rows:
            acc = evaluate(task, C.compress(params, method, **options), examples)["accuracy"]
            out.append({"task": name, "method": method, **options, "accuracy": acc, "n": len(examples)})
    accuracy = {(r["task"], C.method_label(r)): r["accuracy"] for r in out}
    table = [{"method": m, **{t: accuracy[t, m] for t in names}} for m in dict.fromkeys(m for _, m in accuracy)]
    print_table(table, [Column("  method", lambda r: "  " + r["method"], 30, align="<")]
                + [Column(name, name, 10, ".3f") for name in names], print_fn)
    return out


def layer_errors(params):
    """{scheme: [relative weight error ||W - deq(W)|| / ||W|| of each compressed matrix, in tree order]}."""
    weights = {p: w for p, w in flatten(params).items() if getattr(w, "ndim", 0) == 2 and not p.startswith("embed")}
    schemes = {"int8 per channel": dict(bits=8), "int4 per channel": dict(bits=4),
               "int4 groups of 32": dict(bits=4, group_size=32)}
    return {name: [float(np.linalg.norm(Q.WeightOnlyMatrix(w, axis=0, **kw).dequantize() - w) / np.linalg.norm(w))
                   for w in weights.values()] for name, kw in schemes.items()}, list(weights)


def bench_quality(tokens=None, print_fn=print, figure_dir=None, text=None, stride=None):
    print_fn(f"SmolLM2-135M-Instruct: perplexity and KL from float32 (± one standard error) on {tokens or 'all'} "
             f"evaluation tokens{'' if text is None else ' of the given text'}, speed of 32 greedy tokens")
    smollm2, model, _ = bench_smollm2(tokens, print_fn=print_fn, text=text, stride=stride)
    errors, names = layer_errors(model.params)
    print_fn("all-MiniLM-L6-v2: the shipped search sentences")
    minilm = bench_minilm(print_fn=print_fn)
    print_fn("Task models: exact-match / label accuracy on 500 held-out examples")
    tasks = bench_tasks(print_fn=print_fn)
    if figure_dir:
        draw(smollm2, errors, names, figure_dir)
    return {"smollm2": smollm2, "minilm": minilm, "tasks": tasks, "layer_errors": errors, "layer_names": names}


def draw(rows, errors, names, figure_dir):
    matplotlib.use("Agg")
    os.makedirs(figure_dir, exist_ok=True)
    plots.save(plots.perplexity_vs_bits(rows), f"{figure_dir}/bench_quality_bits.png")
    plots.save(plots.kl_by_method(rows), f"{figure_dir}/bench_quality_kl.png")
    plots.save(plots.perplexity_vs_sparsity(rows), f"{figure_dir}/bench_quality_sparsity.png")
    plots.save(plots.layer_errors(errors, names), f"{figure_dir}/bench_quality_layers.png")
