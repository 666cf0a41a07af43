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
# **1.** Write `my_online_softmax(scores, block)` returning the softmax of a 1-D array, visiting it one tile of
# `block` entries at a time (keep m and l only).

# %%
# Reference solution
def my_online_softmax(scores, block):
    m, ell = -np.inf, 0.0
    for start in range(0, len(scores), block):
        tile = scores[start:start + block]
        m_new = max(m, tile.max())
        ell = ell * np.exp(m - m_new) + np.exp(tile - m_new).sum()
        m = m_new
    return np.exp(scores - m) / ell


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
