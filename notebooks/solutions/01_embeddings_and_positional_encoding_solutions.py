# %% [markdown]
# # Solutions: 1. Embeddings and the sin-cos positional encoding
#
# Reference solutions to the exercises of [01_embeddings_and_positional_encoding](../01_embeddings_and_positional_encoding.ipynb). Try them there first; each solution here is run through the same checker (and this notebook runs in CI).

# %%
import math

import numpy as np

import transformer_np as tn
from transformer_np.teaching import exercises


# %% [markdown]
# **1.** Write `my_pe(max_len, d_model)` returning the sin-cos table (float64), straight from the equation.

# %%
# Reference solution
def my_pe(max_len, d_model):
    pos = np.arange(max_len)[:, None]
    i2 = np.arange(0, d_model, 2)
    angle = pos / 10000 ** (i2 / d_model)
    out = np.zeros((max_len, d_model))
    out[:, 0::2] = np.sin(angle)
    out[:, 1::2] = np.cos(angle[:, : d_model // 2])
    return out


exercises.check_positional_encoding(my_pe)


# %% [markdown]
# **2.** Build $M_k$ in closed form: `my_rotation(k, d_model)` returns the $(d, d)$ matrix with
# $PE[pos+k] = M_k\,PE[pos]$. Hint: $\sin(a+b) = \sin a\cos b + \cos a \sin b$.

# %%
# Reference solution
def my_rotation(k, d_model):
    M = np.zeros((d_model, d_model))
    for i in range(d_model // 2):
        w = 10000 ** (-2 * i / d_model)
        c, s = math.cos(k * w), math.sin(k * w)
        M[2 * i : 2 * i + 2, 2 * i : 2 * i + 2] = [[c, s], [-s, c]]
    return M


exercises.check_rotation(my_rotation)

# %% [markdown]
# **3.** Write `my_table_params(max_len, d_model)`: the number of parameters of a learned position table.
# How many does GPT-2 small (max_len 1024, C = 768) spend on positions, and the sin-cos table?

# %%
def my_table_params(max_len, d_model):
    return max_len * d_model  # one learned C-vector per position


exercises.check_position_table_params(my_table_params)
print(f"GPT-2 small: {my_table_params(1024, 768):,} learned position parameters; the sin-cos table has none")
