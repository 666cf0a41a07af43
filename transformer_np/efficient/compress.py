r"""Every compression method of this package as one recipe: a model's params tree in, a compressed tree out.

    method              what it does                                             options
    float32             nothing (the reference)
    float16 / bfloat16  weights stored in 16 bits, widened per product
    float8_e4m3fn / _e5m2  weights stored in 8-bit floats
    int8 / int4         weight-only, per output channel or in groups of inputs   bits, group_size, asymmetric
    q8_0 … q4_0         GGUF's block formats, ggml's rounding (core.ggml_formats): blocks of 32 inputs, float16
                        scales — what a GGUF file of that type would hold (q8_0, q5_1, q5_0, q4_1, q4_0)
    w8a8                int8 weights per channel × int8 activations per token
    gptq                int4/int3/… by GPTQ: rounding errors spread with XᵀX     bits, group_size
    awq                 int4/… by AWQ: activation-aware scales, then RTN           bits, group_size
    smoothquant         SmoothQuant's factors folded (norms; W_up→W_down), then W8A8   alpha
    llm.int8            W8A8 with the outlier input columns in float             threshold
    kv-int8             the KV cache stored as int8 (weights untouched)
    magnitude / magnitude-global / wanda   unstructured pruning              sparsity
    2:4 / wanda-2:4     semi-structured pruning (2 of every 4 inputs kept)

The embedding table stays float32 unless ``quantize_embedding`` (it is also SmolLM2's output layer, read whole
for every token's logits).  Recipes that need activation statistics (smoothquant, wanda) take recorders from
``quality.record_activations`` on the calibration text (gptq: with ``hessian=True``; awq: with ``keep_rows``).
"""

from __future__ import annotations

import numpy as np

from ..core.checks import check_choice
from ..core.ggml_formats import GGUFMatrix
from ..core.tree import flatten, map_weights, unflatten
from . import awq, gptq, precision, prune
from . import quantize as Q

GGUF_FORMATS = ("q8_0", "q5_1", "q5_0", "q4_1", "q4_0")
METHODS = ("float32", "float16", "bfloat16", "float8_e4m3fn", "float8_e5m2", "int8", "int4", *GGUF_FORMATS, "gptq",
           "awq", "w8a8", "smoothquant", "llm.int8", "kv-int8", "magnitude", "magnitude-global", "wanda", "2:4",
           "wanda-2:4")
NEEDS_CALIBRATION = ("gptq", "awq", "smoothquant", "wanda", "wanda-2:4")
# what a method's recorders must hold beyond the activation statistics (quality.record_activations' options)
CALIBRATION = {"gptq": {"hessian": True}, "awq": {"keep_rows": 512}}
OPTIONS = ("bits", "group_size", "asymmetric", "sparsity", "alpha", "threshold", "keys", "quantize_embedding")


def method_label(row):
    """"int4 (group_size=32)": a method and the options a measurement row ({method, option: value, …}) carries;
    int8/int4 with other bits are named by them ("int3 (group_size=128)")."""
    rename = row["method"] in ("int8", "int4") and row.get("bits") is not None
    opts = ", ".join(f"{k}={row[k]}" for k in OPTIONS if k in row and not (rename and k == "bits"))
    return (f"int{row['bits']}" if rename else row["method"]) + (f" ({opts})" if opts else "")


def smoothquant_fold(params, recorders, alpha=0.5):
    """The float params tree smoothed by SmoothQuant's factors s (quantize.smoothing_factors from the recorded
    max|X_j|), the same function with smoother activations: the down projection's input through a gated FFN's
    linear branch (W_up's columns ÷ s, W_down's rows × s), then each norm's γ ÷ s and the rows of the linears it
    feeds × s (Q, K, V; gate, up).  Attention's output projection W_O is not smoothed (its input is a mix of the
    value heads, which grouped-query attention shares between query heads)."""
    flat = dict(flatten(params))
    for up, down in Q.gated_ffn_pairs(params):
        s = Q.smoothing_factors(recorders[down].absmax, np.abs(flat[down]).max(axis=1), alpha)
        flat[up], flat[down] = Q.smooth_fold_up_down(flat[up], flat[down], s.astype(flat[down].dtype))
    for norm, linears in Q.norm_fed_groups(params):
        x_absmax = recorders[linears[0]].absmax  # the linears of a group read the same normalised input
        w_absmax = np.max([np.abs(flat[p]).max(axis=1) for p in linears], axis=0)
        s = Q.smoothing_factors(x_absmax, w_absmax, alpha).astype(flat[norm].dtype)
        flat[norm], ws = Q.smooth_fold(flat[norm], [flat[p] for p in linears], s)
        flat.update(zip(linears, ws))
    return unflatten(flat, params)


def compress(params, method, *, bits=None, group_size=None, asymmetric=False, sparsity=0.5, alpha=0.5,
             threshold=6.0, recorders=None, quantize_embedding=False):
    """The params tree compressed by ``method`` (see the module docstring).  kv-int8 leaves the weights as they
    are (the cache is the caller's: kv_int8.int8_cache)."""
    check_choice("method", method, METHODS)
    if method in NEEDS_CALIBRATION and recorders is None:
        raise ValueError(f"{method} needs activation statistics: recorders=quality.record_activations(...)")
    skip = () if quantize_embedding else ("embed",)
    if method in ("float32", "kv-int8"):
        return params
    if method in precision.FORMATS:
        return precision.cast_params(params, method, skip)
    if method in ("int8", "int4"):  # groups along the inputs; in the embedding table (V, C), along each row
        b = bits or int(method[3:])
        return _by_role(params, lambda w, axis: Q.WeightOnlyMatrix(w, b, axis=axis, group_size=group_size,
                                                                   asymmetric=asymmetric), skip)
    if method in GGUF_FORMATS:
        return _by_role(params, lambda w, axis: _gguf_matrix(w, method.upper(), axis), skip)
    if method == "gptq":
        if any(r.xtx is None for r in recorders.values()):
            raise ValueError("gptq needs each weight's XᵀX: recorders=quality.record_activations(..., hessian=True)")
        return map_weights(params, lambda p, w: gptq.gptq_matrix(w, recorders[p].xtx, bits or 4, group_size), skip)
    if method == "awq":
        if any(r.keep_rows == 0 for r in recorders.values()):
            raise ValueError("awq searches its scales on calibration rows: "
                             "recorders=quality.record_activations(..., keep_rows=512)")
        return awq.awq_params(params, recorders, bits or 4, group_size, skip=skip)[0]
    if method in ("w8a8", "smoothquant"):
        base = smoothquant_fold(params, recorders, alpha) if method == "smoothquant" else params
        return Q.quantize_params(base, Q.W8A8Matrix, skip)
    if method == "llm.int8":
        return Q.quantize_params(params, lambda w: Q.LLMInt8Matrix(w, threshold), skip)
    return prune_params(params, method, sparsity, recorders, skip)


STORED_FORMS = ("int8", "bfloat16", "float16", "float8_e4m3fn")  # what row_converter makes
CONVERT_VALUES = 2**20  # values of a matrix read (as float32) at a time while it is converted


def row_converter(form):
    """``convert=`` for a loader (pretrained.llama.load_llama_gguf): a (R, C) matrix whose rows are read a few
    at a time, ``read_rows(slice)`` -> float32, stored as ``form`` — int8 with one scale per row (symmetric,
    :func:`~.quantize.quantize_symmetric`: a linear's output channel, or a token of the embedding table), or a
    narrow float format (:class:`~.precision.CastMatrix`) — so the whole matrix is never float32 at once (the
    49,152-row embedding table is 113 MB of float32)."""
    check_choice("form", form, STORED_FORMS)

    def convert(read_rows, shape):
        R, C = shape
        step = max(1, CONVERT_VALUES // C)
        if form == "int8":  # groups along each row: (R, 1, C) in the grouped layout, a scale per row
            q, scale = np.empty((R, 1, C), np.int8), np.empty((R, 1, 1), np.float32)
            for r in range(0, R, step):
                part = Q.quantize_symmetric(read_rows(slice(r, r + step)), 8, axis=1)
                q[r: r + step], scale[r: r + step] = part.q, part.scale
            return Q.WeightOnlyMatrix.from_quantized(Q.Quantized(q, scale, None, 8, 1, None, (R, C)))
        stored = np.empty((R, C), precision.storage_dtype(form))
        for r in range(0, R, step):
            stored[r: r + step] = precision.store(read_rows(slice(r, r + step)), form)
        return precision.CastMatrix.from_stored(stored, form)

    return convert


def _by_role(params, make, skip):
    """Every matrix w replaced by make(w, axis): axis 0 (groups along the inputs of a (C_in, C_out) weight) for a
    linear, axis 1 for an embedding table (V, C) — its rows are looked up, and read as the tied output layer's
    rows (x @ tableᵀ), so they are what is grouped."""
    return map_weights(params, lambda p, w: make(w, 1 if p.split("/")[0] == "embed" else 0), skip)


def _gguf_matrix(w, type_name, axis):
    """w in ggml blocks that run along ``axis``: a file's rows are the outputs, so a linear's W (C_in, C_out) is kept
    as the rows of Wᵀ (axis 0); an embedding table (V, C) as its own rows (axis 1)."""
    w = np.asarray(w)
    return GGUFMatrix.quantized(w.T, type_name).T if axis == 0 else GGUFMatrix.quantized(w, type_name)


def prune_params(params, method, sparsity, recorders, skip):
    """Masks by ``method`` on every 2-D weight outside ``skip``, applied in place of the weights."""
    weights = {p: w for p, w in flatten(params).items() if getattr(w, "ndim", 0) == 2 and p.split("/")[0] not in skip}
    if method == "magnitude-global":
        masks = prune.global_magnitude_masks(weights, sparsity)
    else:
        def mask(path, w):
            if method == "magnitude":
                return prune.magnitude_mask(w, sparsity)
            if method == "2:4":
                return prune.n_m_mask(w, 2, 4)
            x_norm = np.sqrt(recorders[path].sumsq)
            if method == "wanda":
                return prune.wanda_mask(w, x_norm, sparsity)
            return prune.n_m_mask(w, 2, 4, score=prune.wanda_score(w, x_norm))  # wanda-2:4
        masks = {p: mask(p, w) for p, w in weights.items()}
    return prune.apply_masks(params, masks)
