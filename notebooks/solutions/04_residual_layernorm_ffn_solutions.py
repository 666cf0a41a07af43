# %% [markdown]
# # Solutions: 4. Residual connections, layer norm and the feed-forward network
#
# Reference solutions to the exercises of [04_residual_layernorm_ffn](../04_residual_layernorm_ffn.ipynb). Try them there first; each solution here is run through the same checker (and this notebook runs in CI).

# %%
import math

import numpy as np

import transformer_np as tn
from transformer_np.teaching import exercises


# %% [markdown]
# **1.** Write `my_layer_norm(x, gamma, beta, eps)` over the last axis (biased variance, eps inside the root).

# %%
# Reference solution
def my_layer_norm(x, gamma, beta, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)   # biased: divide by C, not C - 1
    return gamma * (x - mu) / np.sqrt(var + eps) + beta


exercises.check_layer_norm(my_layer_norm)

# %% [markdown]
# **2.** Write `my_gelu(x)`, the exact GELU. (`scipy.special.erf` is vectorised; `math.erf` is not.)

# %%
# Reference solution
from scipy.special import erf


def my_gelu(x):
    return 0.5 * x * (1 + erf(x / np.sqrt(2)))


exercises.check_gelu(my_gelu)
