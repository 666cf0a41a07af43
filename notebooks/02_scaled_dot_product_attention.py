# %% [markdown]
# # 2. Scaled dot-product attention
#
# *Attention Is All You Need*, §3.2.1. Each query asks "which keys are like me?"; the answer is a softmax over
# the query–key dot products, and the output is that weighted average of the values. The dot products are
# divided by $\sqrt{d_k}$ "to counteract" the growth of their size with the dimension $d_k$.
#
# $$\mathrm{Attention}(Q, K, V) = \mathrm{softmax}\!\left(\frac{QK^\top}{\sqrt{d_k}}\right)V$$
#
# Shapes: $Q$ is (…, T, D), $K$ is (…, S, D), $V$ is (…, S, Dv); the scores and weights are (…, T, S) — one
# row per query, one column per key.

# %%
import numpy as np

import transformer_np as tn
from transformer_np import viz
from transformer_np.core import reference
from transformer_np.viz import figures

# %% [markdown]
# ## The call, and a live check against the loop-level version

# %%
rng = np.random.default_rng(0)
q, k, v = rng.standard_normal((4, 8)), rng.standard_normal((6, 8)), rng.standard_normal((6, 3))
out, weights = tn.scaled_dot_product_attention(q, k, v)
print("out", out.shape, "weights", weights.shape)   # (T, Dv), (T, S)

loop_out, loop_w = reference.loop_attention(q, k, v)  # explicit sums over d and s
np.testing.assert_allclose(out, loop_out, atol=1e-12)
np.testing.assert_allclose(weights, loop_w, atol=1e-12)
np.testing.assert_allclose(weights.sum(-1), 1.0)       # each query's weights are a distribution
print("matches the equation written as loops")

# %% [markdown]
# ## Why divide by $\sqrt{d_k}$
#
# The paper's argument assumes the entries of $q$ and $k$ are **independent, with mean 0 and variance 1**. Then
# each product $q_j k_j$ has mean 0 and variance 1, and their sum $q\cdot k = \sum_{j=1}^{d_k} q_j k_j$ has
# variance $d_k$. Large scores push softmax to a one-hot vector, whose gradients vanish. Dividing by
# $\sqrt{d_k}$ brings the variance back to 1 (for trained, correlated q and k the scale is only a rule of thumb):

# %%
for d in (4, 64, 1024):
    qs, ks = rng.standard_normal((20000, d)), rng.standard_normal((20000, d))
    s = (qs * ks).sum(-1)
    print(f"d_k={d:5d}: var(q·k) = {s.var():7.1f}   var(q·k/√d_k) = {(s / np.sqrt(d)).var():.3f}")

# %%
viz.softmax_saturation();

# %% [markdown]
# ## A labelled example
#
# Six words, each a fixed random vector (equal words, equal vectors), used directly as $Q = K = V$. Each word
# attends mostly to itself, and the two "the"s split their attention between each other.

# %%
words = figures.SENTENCE
x = figures.sentence_embeddings(words)              # (1, T, 16)
out, w = tn.scaled_dot_product_attention(x, x, x)
viz.attention_weights(w[0], words, words, title="softmax(QKᵀ/√d), Q = K = V = word vectors");

# %% [markdown]
# ## Masks
#
# A mask is boolean and **True where query $t$ may attend to key $s$**. The causal mask (a decoder must not
# look ahead) is the lower triangle; a padding mask hides the padding keys of a shorter sequence; both
# together are their logical AND.

# %%
causal = tn.causal_mask(6)
pad = tn.padding_mask(np.array([4]), max_len=6)     # (B, 1, 1, S): broadcasts over heads and queries
both = tn.combine_masks(causal, pad)                 # (1, 1, 6, 6)
viz.masks({"causal": causal, "padding (4 real tokens)": np.broadcast_to(pad[0, 0], (6, 6)),
           "causal AND padding": both[0, 0]});

# %%
_, w_causal = tn.scaled_dot_product_attention(x, x, x, mask=causal)
viz.attention_weights(w_causal[0], words, words, title="the same example with the causal mask")
assert np.all(np.triu(w_causal[0], 1) == 0)          # no weight on future keys, exactly
np.testing.assert_allclose(w_causal[0].sum(-1), 1.0)  # and each row is still a distribution

# %% [markdown]
# A masked key gets weight exactly 0 — as it would with a $-10^9$ constant too, since $e^{-10^9}$ underflows to
# 0; the boolean mask differs only where *every* key of a query is masked (below) — and the output at
# position $t$ cannot change when tokens after $t$ change:

# %%
x2 = x.copy()
x2[0, 4:] += 10.0                                    # change the last two tokens
out1, _ = tn.scaled_dot_product_attention(x, x, x, mask=causal)
out2, _ = tn.scaled_dot_product_attention(x2, x2, x2, mask=causal)
np.testing.assert_allclose(out1[0, :4], out2[0, :4], atol=1e-12)
print("outputs at t < 4 unchanged:", np.allclose(out1[0, :4], out2[0, :4]))

# %% [markdown]
# Chapter 1 promised a check: without positions, attention cannot tell word order. Shuffle the tokens and every
# token's output is shuffled the same way — self-attention is **permutation-equivariant**:

# %%
perm = np.array([3, 0, 5, 1, 4, 2])
out_x, _ = tn.scaled_dot_product_attention(x, x, x)
out_p, _ = tn.scaled_dot_product_attention(x[:, perm], x[:, perm], x[:, perm])
np.testing.assert_allclose(out_p, out_x[:, perm], atol=1e-12)
print("attention(shuffled tokens) == shuffled attention(tokens):", np.allclose(out_p, out_x[:, perm]))

# %% [markdown]
# ## The fully masked query
#
# If every key of a query is masked (say, a padding *query* whose keys are all padding), the softmax has
# nothing to normalise. torch returns NaN there, which then spreads; transformer_np returns weights of 0 and
# an output of 0 — a stated, tested deviation.

# %%
mask = np.ones((6, 6), bool)
mask[2] = False                                      # query 2 may see nothing
out, w = tn.scaled_dot_product_attention(x, x, x, mask=mask)
print("weights of query 2:", w[0, 2], " output:", out[0, 2, :3], "...")
assert np.all(np.isfinite(out)) and np.all(w[0, 2] == 0)

# %% [markdown]
# ## Exercises
#
# **1.** Write `my_causal_mask(T)`: a (T, T) boolean array, True where query $t$ may attend to key $s$.

# %%
from transformer_np.teaching import exercises

my_causal_mask = None  # replace with your function

# %%
if my_causal_mask is None:
    print("not attempted yet")
else:
    exercises.check_causal_mask(my_causal_mask)

# %% jupyter={"source_hidden": true} tags=["solution"]
# Reference solution: key s is visible from query t when s <= t
def my_causal_mask(T):
    return np.arange(T)[None, :] <= np.arange(T)[:, None]


exercises.check_causal_mask(my_causal_mask)

# %% [markdown]
# **2.** Write `my_attention(q, k, v, mask)` returning `(out, weights)` with NumPy only. Masked keys must get
# exactly zero weight.

# %%
my_attention = None  # replace with your function

# %%
if my_attention is None:
    print("not attempted yet")
else:
    exercises.check_attention(my_attention)

# %% jupyter={"source_hidden": true} tags=["solution"]
# Reference solution
def my_attention(q, k, v, mask):
    scores = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])   # (..., T, S)
    scores = np.where(mask, scores, -np.inf)
    e = np.exp(scores - scores.max(-1, keepdims=True))         # masked: exp(-inf) = 0
    w = e / e.sum(-1, keepdims=True)
    return w @ v, w


exercises.check_attention(my_attention)

# %% [markdown]
# **3.** Without scaling, by what factor is the standard deviation of $q\cdot k$ larger for $d_k = 64$ than
# for $d_k = 1$? (A number.)

# %%
my_factor = None  # replace with a number

# %%
if my_factor is None:
    print("not attempted yet")
else:
    assert abs(my_factor - 8) < 1e-9, "variance grows like d_k, so the standard deviation like √d_k"
    print("✓ correct")

# %% jupyter={"source_hidden": true} tags=["solution"]
my_factor = np.sqrt(64)  # variance d_k -> standard deviation √d_k = 8
s64 = (rng.standard_normal((50000, 64)) * rng.standard_normal((50000, 64))).sum(-1)
s1 = rng.standard_normal(50000) * rng.standard_normal(50000)
print(f"measured ratio {s64.std() / s1.std():.2f}, predicted {my_factor:.0f}")
assert abs(s64.std() / s1.std() - my_factor) < 0.3
