# %% [markdown]
# # Solutions: 3. Multi-head attention
#
# Reference solutions to the exercises of [03_multi_head_attention](../03_multi_head_attention.ipynb). Try them there first; each solution here is run through the same checker (and this notebook runs in CI).

# %%
import math

import numpy as np

import transformer_np as tn
from transformer_np.teaching import exercises


# %% [markdown]
# **1.** Write `my_split_heads(x, H)`: (B, T, C) → (B, H, T, D), head $h$ taking columns $hD\ldots(h+1)D-1$.

# %%
# Reference solution
def my_split_heads(x, H):
    B, T, C = x.shape
    return x.reshape(B, T, H, C // H).transpose(0, 2, 1, 3)


exercises.check_split_heads(my_split_heads)


# %% [markdown]
# **2.** Write `my_mha_params(C)`: the number of parameters of one multi-head attention block (four $C\times C$
# matrices and four biases). Does it depend on the number of heads?

# %%
# Reference solution: 4·C² + 4·C, whatever the number of heads (they split C, they do not add to it)
def my_mha_params(C):
    return 4 * C * C + 4 * C


exercises.check_mha_param_count(my_mha_params)
print("paper base (C=512):", f"{my_mha_params(512):,}")
