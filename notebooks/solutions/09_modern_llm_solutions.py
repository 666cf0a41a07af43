# %% [markdown]
# # Solutions: 9. 2017 → today: a modern LLM in NumPy
#
# Reference solutions to the exercises of [09_modern_llm](../09_modern_llm.ipynb). Try them there first; each solution here is run through the same checker (and this notebook runs in CI).

# %%
import math

import numpy as np

import transformer_np as tn
from transformer_np.teaching import exercises


# %% [markdown]
# **1.** Write `my_rms_norm(x, gamma, eps)`.

# %%
# Reference solution
def my_rms_norm(x, gamma, eps):
    return gamma * x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)


exercises.check_rms_norm(my_rms_norm)


# %% [markdown]
# **2.** Write `my_rope(x, positions, base)` for x of shape (T, D): rotate each pair $(x_{2i}, x_{2i+1})$ of row t
# by the angle positions[t] · base^(−2i/D).

# %%
# Reference solution
def my_rope(x, positions, base):
    D = x.shape[-1]
    theta = positions[:, None] * base ** (-np.arange(0, D, 2) / D)  # (T, D/2)
    a, b = x[:, 0::2], x[:, 1::2]
    out = np.empty_like(x)
    out[:, 0::2], out[:, 1::2] = a * np.cos(theta) - b * np.sin(theta), a * np.sin(theta) + b * np.cos(theta)
    return out


exercises.check_rope(my_rope)


# %% [markdown]
# **3.** Write `my_cache_bytes(n_layers, n_kv_heads, d_head, tokens, itemsize)`: the KV cache of a grouped-query
# model. How many tokens of SmolLM2's context fit in 1 GiB?

# %%
# Reference solution
def my_cache_bytes(n_layers, n_kv_heads, d_head, tokens, itemsize):
    return 2 * n_layers * n_kv_heads * d_head * tokens * itemsize


exercises.check_gqa_cache_bytes(my_cache_bytes)
print("tokens in 1 GiB:", 2**30 // my_cache_bytes(30, 3, 64, 1, 4))
