r"""Pruning: set weights (or whole attention heads) to zero, keeping every shape.

    magnitude (per layer)   drop the fraction p of W's entries with the smallest |W_ij|
    magnitude (global)      one threshold |W| ≥ τ for every layer together
    n:m semi-structured     in each run of m consecutive inputs of an output, keep the n largest |W_ij| (2:4:
                            the pattern sparse tensor cores run at twice the speed)
    Wanda                   score |W_ij| · ‖X_i‖₂ (X_i: input channel i over a calibration text), compared
                            within each output: drop the lowest fraction p (Sun et al. 2023)
    heads                   zero head h's rows of W_O: its output no longer reaches the residual stream

Weights here are (C_in, C_out) (y = x W): input i is a row, output j a column.  A mask is a bool array of W's
shape, True where the weight is kept; ``apply_masks`` multiplies, so shapes (and the code) never change.
"""

from __future__ import annotations

import math

import numpy as np

from ..core.backend import array_namespace, device
from ..core.checks import check_int, check_real
from ..core.tree import flatten, map_weights


def _check_sparsity(sparsity):
    return check_real("sparsity", sparsity, low=0.0, high=1.0, high_open=True)


def _smallest(scores, k, axis=-1):
    """Indices of the k smallest scores along ``axis`` (ties broken by position): an O(n) partition in NumPy,
    a sort elsewhere."""
    xp = array_namespace(scores)
    if k == 0:
        shape = list(scores.shape)
        shape[axis] = 0
        return xp.zeros(tuple(shape), dtype=xp.int64)
    if isinstance(scores, np.ndarray):
        return np.take(np.argpartition(scores, k - 1, axis=axis), np.arange(k), axis=axis)
    return xp.take(xp.argsort(scores, axis=axis, stable=True), xp.arange(k), axis=axis)


def _drop(shape, idx, axis, xp):
    """A bool mask of ``shape``, False at the indices idx along axis (as from _smallest)."""
    keep = np.ones(shape, dtype=bool)
    np.put_along_axis(keep, np.asarray(idx), False, axis=axis)
    return keep if isinstance(idx, np.ndarray) else xp.asarray(keep)


def magnitude_mask(w, sparsity):
    """Keep the (1 - sparsity) fraction of w's entries with the largest |w|."""
    _check_sparsity(sparsity)
    xp = array_namespace(w)
    n_drop = int(round(sparsity * math.prod(w.shape)))
    flat = xp.reshape(xp.abs(w), (-1,))
    return xp.reshape(_drop(flat.shape, _smallest(flat, n_drop), 0, xp), w.shape)


def global_magnitude_masks(weights, sparsity):
    """{name: mask} with one threshold τ for all of ``weights`` ({name: w}), |w| > τ kept: each layer loses the
    entries at or below τ, so the sparsity is reached overall (a little more where weights tie at τ: SmolLM2's
    4-bit-grid weights lose 50.004% at 0.5)."""
    _check_sparsity(sparsity)
    scores = np.concatenate([np.abs(np.asarray(w)).reshape(-1) for w in weights.values()])
    n_drop = int(round(sparsity * scores.size))
    tau = np.partition(scores, n_drop - 1)[n_drop - 1] if n_drop else -np.inf
    return {name: np.abs(np.asarray(w)) > tau for name, w in weights.items()}


def n_m_mask(w, n=2, m=4, score=None):
    """In each run of m consecutive inputs (rows) of every output (column), keep the n largest |w| (or the n
    largest ``score``, e.g. Wanda's |W_ij|·‖X_i‖₂)."""
    check_int("m", m, low=1)
    check_int("n", n, low=0, high=m)
    xp = array_namespace(w)
    C_in, C_out = w.shape
    if C_in % m:
        raise ValueError(f"n:m pruning needs C_in divisible by m={m}, got C_in={C_in}")
    groups = xp.reshape(xp.abs(w) if score is None else score, (C_in // m, m, C_out))
    return xp.reshape(_drop(groups.shape, _smallest(groups, m - n, axis=1), 1, xp), w.shape)


def wanda_score(w, x_norm):
    r"""score_{ij} = |W_ij| · ‖X_i‖₂: a weight matters as much as the inputs it multiplies.  x_norm: (C_in,)."""
    xp = array_namespace(w)
    return xp.abs(w) * xp.reshape(x_norm, (-1, 1))  # (C_in, C_out)


def wanda_mask(w, x_norm, sparsity):
    r"""Wanda: in each output column j drop the fraction p of inputs i with the lowest |W_ij| · ‖X_i‖₂.
    x_norm: (C_in,) the L2 norm of each input channel over the calibration tokens."""
    _check_sparsity(sparsity)
    xp = array_namespace(w)
    score = wanda_score(w, x_norm)
    n_drop = int(round(sparsity * w.shape[0]))
    return _drop(score.shape, _smallest(score, n_drop, axis=0), 0, xp)  # the lowest n_drop of every column


def apply_masks(params, masks):
    """The params tree with each weight at a path of ``masks`` ({path: bool mask}) multiplied by its mask."""
    return map_weights(params, lambda path, w: w * masks[path] if path in masks else w)


def sparsity_of(params, paths=None):
    """The fraction of zeros among the weights at ``paths`` (default: every 2-D weight)."""
    flat = {p: w for p, w in flatten(params).items() if getattr(w, "ndim", 0) == 2 and (paths is None or p in paths)}
    zeros = sum(int(np.sum(np.asarray(w) == 0)) for w in flat.values())
    return zeros / sum(math.prod(w.shape) for w in flat.values())


# --- heads -------------------------------------------------------------------------------------------------


def head_rows(h, d_head):
    """The rows of W_O (H·D, C) that carry head h's output: h·D … (h+1)·D - 1."""
    return slice(h * d_head, (h + 1) * d_head)


def head_mask_w_o(w_o, heads, d_head):
    """W_O with the rows of every head in ``heads`` zeroed: those heads are pruned."""
    xp = array_namespace(w_o)
    head_of_row = xp.arange(w_o.shape[0], device=device(w_o)) // d_head  # (H·D,)
    drop = xp.zeros(w_o.shape[0], dtype=xp.bool, device=device(w_o))
    for h in heads:
        drop = drop | (head_of_row == h)
    return w_o * xp.astype(~drop, w_o.dtype)[:, None]


def head_gate_gradients(w_o, g_w_o, n_heads):
    r"""∂L/∂ξ_h for a gate ξ_h = 1 on each head's output, from W_O and its gradient:

    forward: y = Σ_h ξ_h · head_h W_O[rows h], so ∂L/∂ξ_h = Σ_{i ∈ rows h, c} W_O[i, c] · ∂L/∂W_O[i, c] at ξ = 1.
    Returns (H,).  Michel et al. (2019) rank heads by I_h = E_x |∂L(x)/∂ξ_h| (one example per gradient)."""
    xp = array_namespace(w_o)
    prod = xp.reshape(w_o * g_w_o, (n_heads, -1))
    return xp.sum(prod, axis=-1)


def head_gate_importance(params, gradients, w_o_paths, n_heads):
    r"""Michel et al.'s I_{l,h} = E_x |∂L(x)/∂ξ_{l,h}|: ``gradients`` yields one params-shaped gradient per example;
    returns (len(w_o_paths), n_heads), the mean absolute gate gradient of every head of every listed W_O."""
    flat_params = flatten(params)
    total, n = np.zeros((len(w_o_paths), n_heads)), 0
    for grads in gradients:
        flat = flatten(grads)
        total += np.abs([np.asarray(head_gate_gradients(flat_params[p], flat[p], n_heads)) for p in w_o_paths])
        n += 1
    return total / max(n, 1)


def head_ablation_importance(loss, params, w_o_paths, n_heads, d_head):
    """Importance by ablation: loss(params with head h of layer l removed) - loss(params), for every head of every
    listed W_O; ``loss(params)`` is any scalar (a language model's loss on a text).  Returns (L, H)."""
    base = loss(params)
    out = np.zeros((len(w_o_paths), n_heads))
    for i, path in enumerate(w_o_paths):
        for h in range(n_heads):
            pruned = map_weights(params, lambda p, w, h=h, path=path: head_mask_w_o(w, [h], d_head) if p == path else w)
            out[i, h] = loss(pruned) - base
    return out


def prune_heads(params, w_o_paths, heads, d_head):
    """params with every head (l, h) in ``heads`` removed: the rows of head h in W_O at ``w_o_paths[l]`` zeroed."""
    by_path = {}
    for layer, h in heads:
        by_path.setdefault(w_o_paths[layer], []).append(h)
    return map_weights(params, lambda path, w: head_mask_w_o(w, by_path[path], d_head) if path in by_path else w)


def heads_by_importance(importance):
    """Every (layer, head) of an importance array (L, H), least important first (ties by position)."""
    order = np.argsort(np.asarray(importance), axis=None, kind="stable")
    return [tuple(int(i) for i in divmod(int(k), importance.shape[1])) for k in order]
