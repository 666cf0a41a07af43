r"""GPTQ (Frantar et al. 2022, "Accurate Post-Training Quantization for Generative Pre-trained Transformers"):
round the weights one input row at a time and spread each rounding error over the rows not yet rounded, so that
the layer's output on calibration inputs X moves as little as possible.

For a linear y = x W (W: C_in × C_out) the output error of a change δ of W is ‖X δ‖² = tr(δᵀ H δ) with
H = XᵀX (C_in × C_in).  Rounding row i of W to q_i leaves the error e_i = w_i − q_i; the best change of the
rows after it, given H, is the Optimal Brain Surgeon update

    w_{i+1:} ← w_{i+1:} − (e_i / [H⁻¹]_{ii}) · [H⁻¹]_{i, i+1:}

and with U the upper Cholesky factor of H⁻¹ (H⁻¹ = UᵀU) every step's [H⁻¹] after removing rows < i is read
from row i of U, so H is inverted once.  Lazy batches: the update of the rows beyond a block of ``block`` rows is
gathered and applied once per block (one matrix product instead of ``block`` rank-one updates) — the same
numbers, in another order.  Groups: each run of ``group_size`` input rows gets its scale when its first row is
reached, from the rows as the updates have left them.  Damping: H + λ·mean(diag H)·I keeps the inverse stable
(λ = 0.01); an input channel that never fired (H_jj = 0) is set to 0 and left out.

The grid is this package's symmetric RTN grid (``quantize.quantize_symmetric`` with ``axis=0``): a GPTQ matrix is
stored, and multiplies, exactly as the RTN one it is compared with.  With H = I there is nothing to spread, and
GPTQ is RTN bit for bit (tested).
"""

from __future__ import annotations

import numpy as np

from ..core.checks import check_positive_int, check_real
from .quantize import Quantized, WeightOnlyMatrix, check_bits, pack_int4


def inverse_hessian_factor(hessian, damp=0.01):
    r"""U, upper triangular with UᵀU = (H + λ·mean(diag H)·I)⁻¹, and the mask of dead input channels (H_jj = 0,
    given H_jj = 1 so that the factor exists).  float64."""
    h = np.array(hessian, dtype=np.float64)
    dead = np.diag(h) == 0
    h[dead, dead] = 1.0
    h[np.diag_indices_from(h)] += damp * np.mean(np.diag(h))
    inv = np.linalg.inv(h)
    return np.linalg.cholesky(inv).T, dead  # cholesky gives the lower L = Uᵀ with inv = L Lᵀ


def gptq_quantize(w, hessian, bits=4, group_size=None, damp=0.01, block=128, dtype=np.float32):
    r"""GPTQ of w (C_in, C_out) against H = XᵀX (C_in, C_in) of calibration inputs X (N, C_in): a
    :class:`~transformer_np.efficient.quantize.Quantized` in quantize_symmetric's layout (axis=0: per output
    channel, groups of ``group_size`` input rows), in ``dtype`` arithmetic (float32: RTN's, so that H = I gives
    RTN's bits; the tests run float64 against a loop-level reference).  block: rows per lazy batch (a multiple of
    group_size)."""
    check_bits(bits, pack=bits <= 4)
    check_real("damp", damp, low=0.0)
    check_positive_int("block", block)
    C_in, C_out = w.shape
    if np.shape(hessian) != (C_in, C_in):
        raise ValueError(f"hessian must be (C_in, C_in) = ({C_in}, {C_in}) for w of shape {w.shape}, "
                         f"got {np.shape(hessian)}")
    g = C_in if group_size is None else check_positive_int("group_size", group_size)
    if C_in % g or (block % g and g % block):
        raise ValueError(f"group_size={g} must divide C_in={C_in} and block={block} (or be a multiple of it)")
    block = max(block, g) if block % g else block
    U, dead = inverse_hessian_factor(hessian, damp)
    U = U.astype(dtype)
    W = np.array(w, dtype=dtype).T.copy()  # (C_out, C_in): row i of w is column i here, as in the paper
    W[:, dead] = 0.0
    q_max = 2 ** (bits - 1) - 1
    Q = np.zeros(W.shape, np.int8)
    S = np.zeros((C_out, C_in // g, 1), dtype)
    for i1 in range(0, C_in, block):
        i2 = min(i1 + block, C_in)
        W1 = W[:, i1:i2]  # a view: updated in place
        E = np.zeros_like(W1)
        for j in range(i2 - i1):
            i = i1 + j
            if i % g == 0:  # a new group: its scale from its rows as they are now
                s = np.max(np.abs(W1[:, j:j + g]), axis=1, keepdims=True) / q_max
                S[:, i // g] = np.where(s > 0, s, 1)
            s = S[:, i // g, 0]
            q = np.clip(np.round(W1[:, j] / s), -q_max, q_max)
            Q[:, i] = q
            e = (W1[:, j] - q * s) / U[i, i]
            W1[:, j + 1:] -= np.outer(e, U[i, i + 1:i2])
            E[:, j] = e
        W[:, i2:] -= E @ U[i1:i2, i2:]
    q = Q.reshape(C_out, C_in // g, g)
    packed = bits <= 4
    return Quantized(pack_int4(q) if packed else q, S.astype(np.float32), None, bits, 0, group_size, (C_in, C_out),
                     packed)


def gptq_matrix(w, hessian, bits=4, group_size=None, damp=0.01, block=128):
    """gptq_quantize's result as a weight that does its own product (a WeightOnlyMatrix, as RTN's)."""
    return WeightOnlyMatrix.from_quantized(gptq_quantize(w, hessian, bits, group_size, damp, block))


def output_error(w, w_hat, hessian):
    r"""Each output channel's squared error on the calibration inputs, from H = XᵀX alone:
    ‖X (w_j − ŵ_j)‖² = δ_jᵀ H δ_j with δ = w − ŵ (C_in, C_out) -> (C_out,) float64 — what GPTQ minimises and
    round-to-nearest does not look at."""
    d = np.asarray(w, np.float64) - np.asarray(w_hat, np.float64)
    return np.sum(d * (np.asarray(hessian, np.float64) @ d), axis=0)
