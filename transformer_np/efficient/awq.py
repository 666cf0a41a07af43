r"""AWQ (Lin et al. 2023, "Activation-aware Weight Quantization"): a few input channels meet large activations,
and their weights matter most; scale those weights up before rounding (so they round relatively finer) and the
activations down by the same factor, so that the float product is unchanged:

    x W = (x ⊘ s) (diag(s) W),      s_j = \overline{|X_j|}^α   (normalised: s / √(max s · min s))

with \overline{|X_j|} the mean magnitude of input channel j on a calibration set and α ∈ [0, 1) searched on
calibration rows X to minimise the output error of the rounded weights,

    α* = argmin_α  Σ_W ‖X W − (X ⊘ s) · RTN(diag(s) W)‖².

α = 0 is s = 1, plain round-to-nearest, so on the calibration rows AWQ is never worse than RTN.  Where a norm feeds
the linears (a Llama block's RMSNorm before Q, K, V and before gate, up) the linears share one s and ⊘ s is
folded into the norm's γ — the float model is the same function (tested), at no cost at run time.  Anywhere
else (attention's output projection, the FFN's down projection, every linear of a post-LN BERT, whose norm
output also feeds the residual) the weight keeps s and divides its input by it (:class:`ScaledInputMatrix`).
The rounding is this package's symmetric RTN in groups (``quantize.WeightOnlyMatrix``), as the rows it is
compared with.
"""

from __future__ import annotations

import numpy as np

from ..core.checks import check_positive_int
from ..core.tree import flatten, unflatten
from ..core.weights import StoredWeight
from .quantize import WeightOnlyMatrix, norm_fed_groups, smooth_fold


def rtn(w, bits, group_size):
    """Round-to-nearest of w (C_in, C_out): symmetric, per output channel, groups of group_size inputs."""
    return WeightOnlyMatrix(w, bits, axis=0, group_size=group_size)


def candidate_scales(x_absmean, alpha):
    r"""s = \overline{|X|}^α / √(max · min): centred on 1 so that the weights' range stays where it was."""
    s = np.maximum(np.asarray(x_absmean, np.float64), 1e-8) ** alpha
    return (s / np.sqrt(s.max() * s.min())).astype(np.float32)


def output_error(x, weights, s, bits, group_size):
    """Σ_W ‖x W − (x ⊘ s) RTN(diag(s) W)‖² on calibration rows x (n, C_in)."""
    xs = x / s
    return sum(float(np.sum((x @ w - xs @ rtn(w * s[:, None], bits, group_size).dequantize()) ** 2))
               for w in weights)


def search_scale(x, x_absmean, weights, bits=4, group_size=128, grid=20):
    """(s, α, {α: output error}) of the best α among 0, 1/grid, …, (grid − 1)/grid for the linears ``weights`` that
    read the same input."""
    check_positive_int("grid", grid)
    errors = {a: output_error(x, weights, candidate_scales(x_absmean, a), bits, group_size)
              for a in np.arange(grid) / grid}
    best = min(errors, key=errors.get)
    return candidate_scales(x_absmean, best), float(best), errors


class ScaledInputMatrix(StoredWeight):
    """diag(s) W, rounded, with the input divided by s at every product: (x ⊘ s) · deq(RTN(diag(s) W))."""

    def __init__(self, w, s, bits, group_size):
        super().__init__(w.shape)
        self.s, self.inner = s, rtn(w * s[:, None], bits, group_size)
        self.compute_dtype = self.inner.compute_dtype

    @property
    def nbytes(self):
        return self.inner.nbytes + self.s.nbytes

    def dequantize_stored(self, rows=None):
        w = self.inner.dequantize() / self.s[:, None]
        return w if rows is None else w[rows]

    def matmul(self, x):
        if self.transposed:
            return x @ self.dequantize()
        return (x / self.s) @ self.inner  # the inner weight's own product (tile by tile where it can)


def awq_params(params, recorders, bits=4, group_size=128, grid=20, skip=("embed",)):
    """The params tree with every matrix outside ``skip`` quantized by AWQ: the scales searched on each recorder's
    kept rows (quality.record_activations(..., keep_rows=n)), folded into the norm where one feeds the linears,
    kept by the weight elsewhere.  Returns (tree, {path of the group's first linear: α})."""
    flat = dict(flatten(params))
    alphas, done = {}, set()
    for norm, linears in norm_fed_groups(params):
        r = recorders[linears[0]]  # the linears of a group read the same normalised input
        s, alphas[linears[0]], _ = search_scale(r.sample, r.absmean, [flat[p] for p in linears], bits, group_size,
                                                grid)
        flat[norm], folded = smooth_fold(flat[norm], [flat[p] for p in linears], s)
        flat.update({p: rtn(w, bits, group_size) for p, w in zip(linears, folded)})
        done.update(linears)
    for p, w in list(flat.items()):
        if p in done or getattr(w, "ndim", 0) != 2 or p.split("/")[0] in skip:
            continue
        r = recorders[p]
        s, alphas[p], _ = search_scale(r.sample, r.absmean, [w], bits, group_size, grid)
        flat[p] = ScaledInputMatrix(w, s, bits, group_size)
    return unflatten(flat, params), alphas


def fold_scales(params, recorders, alpha):
    """The float tree with one α's scales folded into every norm group (no rounding): the same function — what
    the tests check before any weight is quantized."""
    flat = dict(flatten(params))
    for norm, linears in norm_fed_groups(params):
        s = candidate_scales(recorders[linears[0]].absmean, alpha)
        flat[norm], folded = smooth_fold(flat[norm], [flat[p] for p in linears], s)
        flat.update(zip(linears, folded))
    return unflatten(flat, params)
