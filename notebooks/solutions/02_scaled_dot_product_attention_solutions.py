# %% [markdown]
# # Solutions: 2. Scaled dot-product attention
#
# Reference solutions to the exercises of [02_scaled_dot_product_attention](../02_scaled_dot_product_attention.ipynb). Try them there first; each solution here is run through the same checker (and this notebook runs in CI).

# %%
import math

import numpy as np

import transformer_np as tn
from transformer_np.teaching import exercises


# %% [markdown]
# **1.** Write `my_causal_mask(T)`: a (T, T) boolean array, True where query $t$ may attend to key $s$.

# %%
# Reference solution: key s is visible from query t when s <= t
def my_causal_mask(T):
    return np.arange(T)[None, :] <= np.arange(T)[:, None]


exercises.check_causal_mask(my_causal_mask)


# %% [markdown]
# **2.** Write `my_attention(q, k, v, mask)` returning `(out, weights)` with NumPy only. Masked keys must get
# exactly zero weight, and a query whose keys are all masked gets zero weights and a zero output (this
# package's rule; torch gives NaN). float32 inputs give float32 outputs.

# %%
# Reference solution
def my_attention(q, k, v, mask):
    scores = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1]).astype(q.dtype)   # (..., T, S)
    scores = np.where(mask, scores, -np.inf)
    m = scores.max(-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)                           # a row with every key masked: nothing to subtract
    e = np.exp(scores - m)                                      # masked: exp(-inf) = 0
    total = e.sum(-1, keepdims=True)
    w = e / np.where(total > 0, total, 1)                       # ... and its weights stay 0, not 0/0
    return w @ v, w


exercises.check_attention(my_attention)

# %% [markdown]
# **3.** Write `my_score_std(d_k)`: the standard deviation of the unscaled score $q\cdot k$ when $q$ and $k$
# have $d_k$ independent entries of mean 0 and variance 1. The checker compares it with a simulation; what
# does dividing by $\sqrt{d_k}$ then make of it?

# %%
def my_score_std(d_k):
    # q·k = Σ_i q_i k_i: d_k independent terms, each of mean 0 and variance E[q²]E[k²] = 1, so Var = d_k
    return math.sqrt(d_k)


exercises.check_score_std(my_score_std)
print("after dividing by √d_k the scores have standard deviation 1 whatever d_k is")
