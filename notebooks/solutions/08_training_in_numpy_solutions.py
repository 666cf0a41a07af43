# %% [markdown]
# # Solutions: 8. Training in NumPy: backward passes, Adam, and models that really work
#
# Reference solutions to the exercises of [08_training_in_numpy](../08_training_in_numpy.ipynb). Try them there first; each solution here is run through the same checker (and this notebook runs in CI).

# %%
import math

import numpy as np

import transformer_np as tn
from transformer_np.teaching import exercises


# %% [markdown]
# **1.** Write `my_softmax_backward(dy, y)`: the gradient with respect to x of softmax(x) = y, given the
# upstream gradient dy (rows on the last axis).

# %%
# Reference solution: dx_i = y_i (dy_i - sum_j dy_j y_j)
def my_softmax_backward(dy, y):
    return y * (dy - (dy * y).sum(-1, keepdims=True))


exercises.check_softmax_backward(my_softmax_backward)


# %% [markdown]
# **2.** Write `my_lr(step, d_model, warmup)`, the paper's learning-rate schedule.

# %%
# Reference solution
def my_lr(step, d_model, warmup):
    return d_model**-0.5 * min(step**-0.5, step * warmup**-1.5)


exercises.check_schedule(my_lr)

# %% [markdown]
# **3.** One training step's gradient. The output layer turns N vectors x (N, C) into logits z = x W + b;
# the loss is the label-smoothed mean cross-entropy with targets y and smoothing ε. Write
# `my_output_grads(W, b, x, y, eps)` returning `(dW, db)`. (Start from dL/dz; the checker uses several shapes
# and values of ε.)

# %%
def my_output_grads(W, b, x, y, eps):
    z = x @ W + b                                            # (N, V)
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    N, V = z.shape
    q = np.full((N, V), eps / V)
    q[np.arange(N), y] += 1 - eps                            # the smoothed target distribution
    dz = (p - q) / N                                         # dL/dz of the mean cross-entropy
    return x.T @ dz, dz.sum(0)


exercises.check_training_gradient(my_output_grads)

# %% [markdown]
# **4.** An ablation: what breaks without the $1/\sqrt{d_k}$, and without the positional encoding? Write
# `my_ablations(task, params, examples)` returning a dict with the exact-match accuracy of the shipped reverse
# model on `examples` as it is (`"full"`), with every attention's scaling removed (`"no_scaling"`) and with no
# positional encoding (`"no_positions"`).

# %%
import dataclasses

from transformer_np.training import evaluate, load_trained


def unscaled(params, d_head):
    """q·k/√D with q = x W^Q + b^Q equals q'·k with q' = x (√D W^Q) + √D b^Q: the scaling is undone exactly."""
    out = {stack: {**params[stack], "layers": [dict(layer) for layer in params[stack]["layers"]]}
           for stack in ("encoder", "decoder")}
    for stack in out.values():
        for layer in stack["layers"]:
            for name in ("self_attn", "cross_attn"):
                if name in layer:
                    a = layer[name]
                    layer[name] = a | {"w_q": a["w_q"] * np.sqrt(d_head), "b_q": a["b_q"] * np.sqrt(d_head)}
    return params | out


def my_ablations(task, params, examples):
    no_pe = dataclasses.replace(task, config=dataclasses.replace(task.config, positional_encoding=False))
    return {"full": evaluate(task, params, examples)["accuracy"],
            "no_scaling": evaluate(task, unscaled(params, task.config.d_head), examples)["accuracy"],
            "no_positions": evaluate(no_pe, params, examples)["accuracy"]}


exercises.check_ablations(my_ablations)
task, params, _, _ = load_trained("reverse")
for key, acc in my_ablations(task, params, task.test[:500]).items():
    print(f"{key:13s} {acc:6.1%} exact match on 500 held-out strings")

