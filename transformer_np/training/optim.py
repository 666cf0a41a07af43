r"""Adam with the paper's learning-rate schedule, and gradient-norm clipping (paper §5.3).

Functions over params trees: the optimiser state is a tree of the same shape (first and second moments)
plus a step count, so it saves and loads like the parameters.
"""

from __future__ import annotations

import math

from ..core.backend import array_namespace
from ..core.tree import flatten, tree_map, unflatten


def noam_lr(step, d_model, warmup=4000, factor=1.0):
    r"""lrate = factor · d_model^{-0.5} · min(step^{-0.5}, step · warmup^{-1.5})   (paper eq. 3): a linear
    warm-up over ``warmup`` steps, then decay as 1/√step.  step counts from 1."""
    if step < 1:
        raise ValueError(f"step counts from 1, got {step}")
    return factor * d_model**-0.5 * min(step**-0.5, step * warmup**-1.5)


def global_norm(grads):
    r"""‖g‖ = \sqrt{\sum_{all entries} g^2} over the whole tree."""
    total = 0.0
    for g in flatten(grads).values():
        xp = array_namespace(g)
        total += float(xp.sum(g * g))
    return math.sqrt(total)


def clip_by_global_norm(grads, max_norm):
    """g · min(1, max_norm / ‖g‖): the whole tree scaled together.  Returns (grads, norm before clipping)."""
    norm = global_norm(grads)
    if max_norm is None or norm <= max_norm:
        return grads, norm
    scale = max_norm / norm
    return tree_map(lambda g: g * scale, grads), norm


def adam_init(params):
    """Zero first and second moments shaped like params, step 0."""
    zeros = tree_map(lambda a: a * 0, params)
    return {"m": zeros, "v": tree_map(lambda a: a * 0, params), "step": 0}


def adam_step(params, grads, state, lr, beta1=0.9, beta2=0.98, eps=1e-9):
    r"""m ← β₁m + (1-β₁)g,  v ← β₂v + (1-β₂)g²,  θ ← θ - lr · \hat m / (\sqrt{\hat v} + ε) with the bias
    corrections \hat m = m / (1-β₁^t), \hat v = v / (1-β₂^t)   (Kingma & Ba; the paper's β₂ = 0.98, ε = 1e-9).
    Returns new (params, state); nothing is changed in place."""
    t = state["step"] + 1
    p, g, m, v = (flatten(tree) for tree in (params, grads, state["m"], state["v"]))
    new_p, new_m, new_v = {}, {}, {}
    c1, c2 = 1.0 - beta1**t, 1.0 - beta2**t
    for k in p:
        xp = array_namespace(p[k])
        new_m[k] = beta1 * m[k] + (1.0 - beta1) * g[k]
        new_v[k] = beta2 * v[k] + (1.0 - beta2) * g[k] * g[k]
        new_p[k] = p[k] - lr * (new_m[k] / c1) / (xp.sqrt(new_v[k] / c2) + eps)
    return unflatten(new_p, params), {"m": unflatten(new_m, params), "v": unflatten(new_v, params), "step": t}
