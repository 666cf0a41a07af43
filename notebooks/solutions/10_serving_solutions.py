# %% [markdown]
# # Solutions: 10. Serving: attention and decoding at scale
#
# Reference solutions to the exercises of [10_serving](../10_serving.ipynb). Try them there first; each solution here is run through the same checker (and this notebook runs in CI).

# %%
import math

import numpy as np

import transformer_np as tn
from transformer_np.teaching import exercises


# %% [markdown]
# **1.** Write `my_online_softmax(tiles)`: the scores arrive one tile at a time (an iterator of 1-D arrays; each
# tile is written over the last, as in a GPU's on-chip memory). Return `(m, l)` — the largest score and
# $\ell = \sum_j e^{s_j - m}$ — keeping only m and ℓ between tiles; then softmax(s) = exp(s − m) / ℓ. (The
# checker's scores climb by hundreds from tile to tile.)

# %%
# Reference solution
def my_online_softmax(tiles):
    m, ell = -np.inf, 0.0
    for tile in tiles:
        m_new = max(m, float(tile.max()))
        ell = ell * np.exp(m - m_new) + np.exp(tile - m_new).sum()  # the old sum rescaled to the new maximum
        m = m_new
    return m, ell


exercises.check_online_softmax(my_online_softmax)


# %% [markdown]
# **2.** How many blocks of 16 tokens does a paged cache need for requests of lengths `lengths`, and how many
# token slots does it waste? Write `my_blocks(lengths, block)` returning `(blocks, wasted_slots)`.

# %%
# Reference solution
def my_blocks(lengths, block):
    blocks = sum(-(-n // block) for n in lengths)
    return blocks, blocks * block - sum(lengths)


exercises.check_paged_blocks(my_blocks)
