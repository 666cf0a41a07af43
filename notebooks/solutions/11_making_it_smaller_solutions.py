# %% [markdown]
# # Solutions: 11. Making it smaller: quantization, mixed precision, pruning
#
# Reference solutions to the exercises of [11_making_it_smaller](../11_making_it_smaller.ipynb). Try them there first; each solution here is run through the same checker (and this notebook runs in CI).

# %%
import numpy as np

from transformer_np.teaching import exercises


# %% [markdown]
# **1.** Write `my_absmax(w, bits)` returning `(q, s)`: symmetric quantization of a (C_in, C_out) matrix with one
# scale per output channel (column). The checker tries several shapes and bit widths.

# %%
def my_absmax(w, bits):
    q_max = 2 ** (bits - 1) - 1
    s = np.abs(w).max(axis=0) / q_max                     # (C_out,): one scale per column
    s = np.where(s > 0, s, 1.0)                           # an all-zero column: any scale reproduces it
    return np.clip(np.round(w / s), -q_max, q_max).astype(np.int8), s


exercises.check_absmax_quantize(my_absmax)


# %% [markdown]
# **2.** Write `my_pack(q)`: int8 values in [-8, 7] (an even number of them) → uint8 bytes, two values a byte,
# value 2i in the low nibble.

# %%
def my_pack(q):
    u = q.astype(np.uint8) & 0x0F                          # two's complement: -1 -> 0b1111
    return u[0::2] | (u[1::2] << 4)


exercises.check_int4_pack(my_pack)
