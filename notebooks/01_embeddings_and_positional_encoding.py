# %% [markdown]
# # 1. Embeddings and the sin-cos positional encoding
#
# *Attention Is All You Need*, §3.4–3.5. A Transformer reads tokens as vectors. The **embedding** turns each
# token id into a learned vector of width $d_{model}$ (= C). Attention itself ignores order — shuffle the
# tokens and every token's result is shuffled the same way (chapter 2 checks this) — so the model **adds a
# position vector** to each token's embedding. The paper uses fixed sinusoids of geometrically growing
# wavelengths.
#
# Shapes in every chapter: B batch · T target length · S source length · C = d_model · H heads ·
# D = C/H · V vocabulary · F = d_ff · L layers.

# %%
import math

import numpy as np

import transformer_np as tn
from transformer_np import viz
from transformer_np.core import reference

# %% [markdown]
# ## The equations
#
# $$\mathrm{Emb}(\text{ids}) = E[\text{ids}]\cdot\sqrt{d_{model}}, \qquad E \in \mathbb{R}^{V\times C}$$
#
# $$PE_{(pos,\,2i)} = \sin\!\left(pos / 10000^{2i/d_{model}}\right), \qquad
#   PE_{(pos,\,2i+1)} = \cos\!\left(pos / 10000^{2i/d_{model}}\right)$$
#
# The model's input is $x = \mathrm{Emb}(\text{ids}) + PE_{[0:T]}$.

# %% [markdown]
# ## The calls

# %%
rng = np.random.default_rng(0)
V, C, T = 10, 8, 6
table = rng.normal(0, C**-0.5, size=(V, C))      # E: (V, C)
ids = np.array([[1, 5, 5, 2, 9, 0]])              # (B, T) = (1, 6)
emb = tn.token_embedding(ids, table)              # (B, T, C)
pe = tn.sinusoidal_positional_encoding(T, C, dtype=np.float64)   # (T, C)
x = emb + pe                                      # (B, T, C)
print("ids", ids.shape, "-> embeddings", emb.shape, "+ PE", pe.shape, "-> x", x.shape)

# %% [markdown]
# ## Live check: the vectorised functions equal the equations written as loops

# %%
np.testing.assert_allclose(pe, reference.loop_positional_encoding(T, C), atol=1e-12)
np.testing.assert_allclose(emb[0], reference.loop_token_embedding(ids[0], table), atol=1e-12)
# the two repeated tokens (id 5) get equal embeddings, but different inputs once positions are added
assert np.array_equal(emb[0, 1], emb[0, 2]) and not np.allclose(x[0, 1], x[0, 2])
# properties: every entry in [-1, 1], and each row has squared norm d/2 (sin² + cos² = 1 per pair)
big = tn.sinusoidal_positional_encoding(1000, 64, dtype=np.float64)
assert np.abs(big).max() <= 1
np.testing.assert_allclose((big**2).sum(-1), 64 / 2)
print("all checks passed")

# %% [markdown]
# Ids outside the vocabulary are an error, not a silent wrap-around (NumPy would read `table[-1]`):

# %%
try:
    tn.token_embedding(np.array([[3, -1]]), table)
except ValueError as e:
    print("ValueError:", e)

# %% [markdown]
# ## Pictures
#
# The table: each column is a sinusoid of position; pair $i$ has wavelength $2\pi \cdot 10000^{2i/d}$, from
# $2\pi$ (left) towards $2\pi\cdot 10000$ — for $d = 64$ the last pair ($2i = 62$) reaches
# $2\pi\cdot 10000^{62/64} \approx 2\pi\cdot 7500$ — so early dimensions tell nearby positions apart and late
# ones vary slowly.

# %%
viz.positional_encoding_heatmap(tn.sinusoidal_positional_encoding(100, 64));

# %%
viz.positional_encoding_waves(tn.sinusoidal_positional_encoding(100, 64));

# %% [markdown]
# The dot product $PE(p)\cdot PE(q) = \sum_i \cos((p-q)\,\omega_i)$ depends only on the offset $q - p$:
# the heatmap is constant along its diagonals.

# %%
pe64 = tn.sinusoidal_positional_encoding(64, 64, dtype=np.float64)
viz.positional_similarity(pe64)
dots = pe64 @ pe64.T
for k in (1, 7, 20):
    np.testing.assert_allclose(np.diagonal(dots, k), np.diagonal(dots, k)[0], atol=1e-10)

# %% [markdown]
# ## Shifting is a rotation: $PE(pos+k) = M_k\, PE(pos)$
#
# The paper chose sinusoids "because we hypothesized it would allow the model to easily learn to attend by
# relative positions". Let us find $M_k$ from data alone — a least-squares fit of $PE[pos+k]$ on $PE[pos]$
# over 5000 positions (over which even the slowest sinusoid of a 16-dim table, wavelength
# $2\pi\cdot 10000^{14/16} \approx 2\pi\cdot 3160$, turns about a quarter) — and look at it: it is
# block-diagonal, one 2×2 rotation per (sin, cos) pair, the same for every $pos$.

# %%
k = 3
pe16 = tn.sinusoidal_positional_encoding(5000, 16, dtype=np.float64)
A, B_ = pe16[:-k], pe16[k:]                       # rows PE[pos] and PE[pos + k]
M_T, *_ = np.linalg.lstsq(A, B_, rcond=None)      # B_ = A @ M^T
M = M_T.T
np.testing.assert_allclose(A @ M.T, B_, atol=1e-10)          # one fixed linear map for every position
np.testing.assert_allclose(M @ M.T, np.eye(16), atol=1e-10)  # ... which is orthogonal,
assert abs(np.linalg.det(M) - 1) < 1e-10                      # with determinant +1: a rotation, not a reflection
print(np.round(M[:4, :4], 3))

# %% [markdown]
# ## Learned positions
#
# BERT and GPT-2 learn the table instead: `learned_positional_embedding(P, T)` is just rows $0\ldots T-1$
# of a trained $P\in\mathbb{R}^{max\_len\times C}$. It costs $max\_len\cdot C$ parameters and cannot go past
# `max_len`; the sinusoids cost nothing and exist for every position. At initialisation a learned table has
# no structure at all:

# %%
P = rng.normal(0, 0.02, size=(64, 64))
viz.positional_similarity(tn.learned_positional_embedding(P, 64),
                          "Dot products P(p)·P(q) of an untrained learned table: no structure");

# %%
try:
    tn.learned_positional_embedding(P, 70)
except ValueError as e:
    print("ValueError:", e)

# %% [markdown]
# ## Exercises
#
# **1.** Write `my_pe(max_len, d_model)` returning the sin-cos table (float64), straight from the equation.

# %%
from transformer_np.teaching import exercises

my_pe = None  # replace with your function

# %%
exercises.check_positional_encoding(my_pe)

# %% [markdown]
# **2.** Build $M_k$ in closed form: `my_rotation(k, d_model)` returns the $(d, d)$ matrix with
# $PE[pos+k] = M_k\,PE[pos]$. Hint: $\sin(a+b) = \sin a\cos b + \cos a \sin b$.

# %%
my_rotation = None  # replace with your function

# %%
exercises.check_rotation(my_rotation)

# %% [markdown]
# **3.** Write `my_table_params(max_len, d_model)`: the number of parameters of a learned position table.
# How many does GPT-2 small (max_len 1024, C = 768) spend on positions, and the sin-cos table?

# %%
my_table_params = None  # replace with your function

# %%
exercises.check_position_table_params(my_table_params)

# %% [markdown]
# ## References
#
# - Vaswani et al. 2017, *Attention Is All You Need* (arXiv:1706.03762): §3.4 embeddings and the shared
#   embedding / output matrix, §3.5 the sinusoidal positional encoding and the remark on learned positions.
# - Gehring et al. 2017, *Convolutional Sequence to Sequence Learning* (arXiv:1705.03122): learned position
#   embeddings, the alternative the paper tried.
# - Press & Wolf 2017, *Using the Output Embedding to Improve Language Models* (arXiv:1608.05859): weight tying.
# - Rush 2018 and Huang et al. 2022, *The Annotated Transformer* (nlp.seas.harvard.edu/annotated-transformer):
#   the positional-encoding section this chapter's checks were first compared with.
