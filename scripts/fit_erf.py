"""Fit the coefficients of core.fast's float32 erf and report its error in ulps.

    python scripts/fit_erf.py

Two branches, each an exact leading term plus a small fitted correction (so float32 rounding stays below an ulp):
|x| < 1: erf(x) = x + x·R(x²) with R a degree-6 polynomial, fitted in absolute error (x·R is compared with x);
1 ≤ |x| < 4: erfc(x) = e^{−x²}·P(x)/Q(x), P and Q of degree 3 (Q(0) = 1), fitted in relative error by
Sanathanan–Koerner iterations (linear least squares, reweighted by the previous denominator).  Reference:
math.erf / math.erfc in double precision.  Prints the coefficients (as core.fast writes them) and the largest
error in float32 ulps of the evaluation with those coefficients rounded as printed.
"""

import math

import numpy as np

SPLIT, TOP = 1.0, 4.0
erf, erfc = np.vectorize(math.erf), np.vectorize(math.erfc)


def fit_polynomial(z, target, degree, passes=30):
    """Least squares, then Lawson reweighting toward the smallest largest error."""
    basis = np.stack([z ** k for k in range(degree + 1)], 1)
    weight = np.ones_like(z)
    for _ in range(passes):
        c, *_ = np.linalg.lstsq(basis * np.sqrt(weight)[:, None], target * np.sqrt(weight), rcond=None)
        r = np.abs(basis @ c - target)
        weight = weight * (r / r.max() + 1e-2)
        weight /= weight.mean()
    return c


def fit_rational(z, target, n_p, n_q, passes=30):
    """target ≈ P(z)/Q(z) in relative error, Q(0) = 1: linearised P − target·(Q − 1) = target, reweighted."""
    q_prev, best = np.ones_like(z), None
    for _ in range(passes):
        cols = [z ** k for k in range(n_p)] + [-target * z ** k for k in range(1, n_q)]
        scale = 1 / (target * q_prev)
        c, *_ = np.linalg.lstsq(np.stack(cols, 1) * scale[:, None], target * scale, rcond=None)
        p, q = c[:n_p], np.concatenate([[1.0], c[n_p:]])
        q_prev = np.polynomial.polynomial.polyval(z, q)
        err = np.abs(np.polynomial.polynomial.polyval(z, p) / q_prev / target - 1).max()
        if best is None or err < best[2]:
            best = (p, q, err)
    return best


def main():
    n = 20000
    xa = SPLIT * (1 - np.cos(np.linspace(0, np.pi / 2, n)))
    xa = xa[xa > 1e-6]
    r = fit_polynomial(xa * xa, erf(xa) / xa - 1, 6)
    xb = np.linspace(SPLIT, TOP, n)
    p, q, rel = fit_rational(xb, erfc(xb) * np.exp(xb * xb), 4, 4)
    fmt = lambda c: "(" + ", ".join(f"{v:.8e}" for v in c) + ")"  # noqa: E731
    print(f"ERF_R = {fmt(r)}\nERF_P = {fmt(p)}\nERF_Q = {fmt(q)}\nrelative error of erfc's fit: {rel:.2e}")
    from transformer_np.core import fast

    fast.ERF_R, fast.ERF_P, fast.ERF_Q = (tuple(float(f"{v:.8e}") for v in c) for c in (r, p, q))
    x = np.concatenate([np.linspace(0, 4.5, 2_000_001, dtype=np.float32),
                        np.geomspace(1e-45, 1, 200_000).astype(np.float32)])
    got = fast.map_chunks(fast.erf_float32, x)
    ref = erf(x.astype(np.float64)).astype(np.float32)
    print(f"largest error: {np.abs(got.view(np.int32).astype(np.int64) - ref.view(np.int32)).max()} ulp")


if __name__ == "__main__":
    main()
