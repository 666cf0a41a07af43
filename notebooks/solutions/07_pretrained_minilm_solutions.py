# %% [markdown]
# # Solutions: 7. A real pretrained model in NumPy: all-MiniLM-L6-v2
#
# Reference solutions to the exercises of [07_pretrained_minilm](../07_pretrained_minilm.ipynb). Try them there first; each solution here is run through the same checker (and this notebook runs in CI).

# %%
import math

import numpy as np

import transformer_np as tn
from transformer_np.teaching import exercises


# %% [markdown]
# **1.** Write `my_pool(x, mask)`: the mean of the token vectors where mask is 1.

# %%
# Reference solution
def my_pool(x, mask):
    m = mask[..., None].astype(x.dtype)
    return (x * m).sum(1) / m.sum(1)


exercises.check_mean_pooling(my_pool)


# %% [markdown]
# **2.** Write `my_rank(query, corpus)`: corpus indices ordered by cosine similarity to the query, best first.
# Then search the bundled sentences.

# %%
# Reference solution
def my_rank(query, corpus):
    c = corpus / np.linalg.norm(corpus, axis=1, keepdims=True)
    return np.argsort(-(c @ (query / np.linalg.norm(query))))


exercises.check_ranking(my_rank)
