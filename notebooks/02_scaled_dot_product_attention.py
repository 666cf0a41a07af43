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
# variance $d_k$. Large scores push softmax to a one-hot vector, whose gradients vanish: softmax's Jacobian is
# $\partial p_i / \partial s_j = p_i(\delta_{ij} - p_j)$, and when one $p_i \to 1$ every entry goes to 0 — the scores
# stop learning. Dividing by $\sqrt{d_k}$ brings the variance back to 1 (for trained, correlated q and k the
# scale is only a rule of thumb). Both effects, measured on random scores (right: the Jacobian's size):

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
# The same two rules in a trained model: the `reverse` model of chapter 8 (it writes a digit string backwards).
# In the page below choose *decoder masked self-attention*: every head's lines go only to earlier positions,
# and each query's weights still sum to one; *encoder self-attention* has no mask. Hover a token to isolate
# its row.

# %%
from transformer_np.viz.explorer import attentions

_, (enc, dec_self, cross) = attentions("reverse", "31415")
assert np.all(np.triu(dec_self.weights, 1) == 0)            # (L, H, T, T): causal in every layer and head
np.testing.assert_allclose(dec_self.weights.sum(-1), 1.0, rtol=1e-5)
viz.explore("reverse", "31415")

# %% [markdown]
# *A page that runs no script — a repository's view of this notebook — leaves the explorer above empty.
# Here is a picture of its head view (the dates model's cross-attention);
# [the example pages](../docs/explore/dates.html) open in any browser.*
#
# ![the attention explorer](../docs/explore_head_view.png)

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
# ## Additive vs dot-product attention
#
# §3.2.1 of the paper compares two ways to score a query against a key. **Additive** attention (Bahdanau et
# al. 2015) feeds the pair through a one-hidden-layer network, $\mathrm{score}(q, k) = v_a^\top \tanh(q W_q +
# k W_k)$; **dot-product** attention takes $q \cdot k$. Both cost about the same number of operations, but the
# dot product is a single matrix multiplication over all pairs, while the additive score must materialise a
# hidden vector of size $A$ for *every* (query, key) pair — a (T, S, A) array. The paper keeps the dot product
# for speed and memory, and adds the $1/\sqrt{d_k}$ because, without it, additive attention had done better at
# large $d_k$ (Britz et al. 2017): the unscaled dot products saturate the softmax, as above.
#
# `tn.core.additive_attention`, checked against its loop-level version, then both timed here:

# %%
from transformer_np.core import additive_attention
from transformer_np.efficient.cost_model import best_time

A = 5
w_q, w_k, v_a = rng.standard_normal((8, A)), rng.standard_normal((8, A)), rng.standard_normal(A)
q, k, v = rng.standard_normal((4, 8)), rng.standard_normal((6, 8)), rng.standard_normal((6, 3))
out_add, w_add = additive_attention(q, k, v, w_q, w_k, v_a)
loop_out, loop_w = reference.loop_additive_attention(q, k, v, w_q, w_k, v_a)
np.testing.assert_allclose(w_add, loop_w, atol=1e-12)
np.testing.assert_allclose(out_add, loop_out, atol=1e-12)
print("additive attention matches its loop-level version")

n, d_ks = 256, [16, 32, 64, 128, 256]
times, nbytes = {"dot-product": [], "additive": []}, {"dot-product": [], "additive": []}
for d in d_ks:   # the additive score's hidden size A = d_k, as in the comparisons the paper cites
    q, k, v = (rng.standard_normal((n, d)).astype(np.float32) for _ in range(3))
    w_q, w_k = (rng.standard_normal((d, d)).astype(np.float32) / np.sqrt(d) for _ in range(2))
    v_a = rng.standard_normal(d).astype(np.float32)
    times["dot-product"].append(best_time(lambda: tn.scaled_dot_product_attention(q, k, v), 3))
    times["additive"].append(best_time(lambda: additive_attention(q, k, v, w_q, w_k, v_a), 3))
    nbytes["dot-product"].append(n * n * 4)       # the (n, n) float32 scores
    nbytes["additive"].append(n * n * d * 4)      # the (n, n, A) float32 hidden array
print({name: [f"{t * 1e3:.1f} ms" for t in ts] for name, ts in times.items()})
viz.attention_kinds_cost(d_ks, times, nbytes, n);

# %% [markdown]
# ## Why self-attention: the paper's Table 1, measured
#
# §4 of the paper compares a self-attention layer with the recurrent and convolutional layers it replaced, for
# a sequence of length $n$ and width $d$:
#
# | layer | complexity per layer | sequential operations | maximum path length |
# |---|---|---|---|
# | self-attention | $O(n^2 \cdot d)$ | $O(1)$ | $O(1)$ |
# | recurrent | $O(n \cdot d^2)$ | $O(n)$ | $O(n)$ |
# | convolutional (kernel $k$) | $O(k \cdot n \cdot d^2)$ | $O(1)$ | $O(\log_k n)$ dilated, $O(n/k)$ contiguous |
# | self-attention restricted to a window $r$ | $O(r \cdot n \cdot d)$ | $O(1)$ | $O(n/r)$ |
#
# `transformer_np.teaching.table1` writes each layer as one formula (the recurrent one is an Elman RNN, whose
# $n$ steps depend on each other and cannot be batched). Below: each layer timed on one float32 sequence of
# width $d = 64$, and the path length *counted*: the fewest edges a signal crosses from position 0 to position
# $n-1$ in the layer's graph (breadth-first search on its connectivity).

# %%
from transformer_np.teaching import table1

lengths = [16, 32, 64, 128, 256, 512, 1024]
layer_times = table1.time_layers(lengths, d=64)
paths = {kind: [table1.path_length(kind, n) for n in lengths] for kind in table1.LAYERS}
paths["convolutional, k = 3"] = paths.pop("convolutional")
paths["self-attention, window r = 8"] = [table1.path_length("self-attention", n, r=8) for n in lengths]
viz.layer_costs(lengths, layer_times, paths, d=64);
for kind in table1.LAYERS:
    print(f"{kind:15s} n = 1024: {layer_times[kind][-1] * 1e3:6.2f} ms, {table1.flops(kind, 1024, 64) / 1e6:6.1f} MFLOP, "
          f"path length {table1.path_length(kind, 1024)}")

# %% [markdown]
# What the measurement shows: self-attention's time grows like $n^2$ once the $n \times n$ scores dominate
# (here beyond $n \approx d$), and the recurrent layer's like $n$ — but its $n$ steps run one after another,
# each a tiny (1, d)·(d, d) product, so Python and memory latency, not arithmetic, set its pace. The paper's
# point is the right panel: one self-attention layer connects every pair of positions by a single edge, where
# the RNN's signal crosses $n - 1$ recurrent steps and a contiguous kernel-3 convolution needs $n - 1$ stacked
# layers (a dilated one, $O(\log_k n)$).

# %% [markdown]
# ## Exercises
#
# **1.** Write `my_causal_mask(T)`: a (T, T) boolean array, True where query $t$ may attend to key $s$.

# %%
from transformer_np.teaching import exercises

my_causal_mask = None  # replace with your function

# %%
exercises.check_causal_mask(my_causal_mask)

# %% [markdown]
# **2.** Write `my_attention(q, k, v, mask)` returning `(out, weights)` with NumPy only. Masked keys must get
# exactly zero weight, and a query whose keys are all masked gets zero weights and a zero output (this
# package's rule; torch gives NaN). float32 inputs give float32 outputs.

# %%
my_attention = None  # replace with your function

# %%
exercises.check_attention(my_attention)

# %% [markdown]
# **3.** Write `my_score_std(d_k)`: the standard deviation of the unscaled score $q\cdot k$ when $q$ and $k$
# have $d_k$ independent entries of mean 0 and variance 1. The checker compares it with a simulation; what
# does dividing by $\sqrt{d_k}$ then make of it?

# %%
my_score_std = None  # replace with your function

# %%
exercises.check_score_std(my_score_std)

# %% [markdown]
# ## References
#
# - Vaswani et al. 2017 (arXiv:1706.03762): §3.2.1 and eq. 1 (scaled dot-product attention, footnote 4 on the
#   variance of q·k), §4 and Table 1 (why self-attention).
# - Bahdanau, Cho & Bengio 2015, *Neural Machine Translation by Jointly Learning to Align and Translate*
#   (arXiv:1409.0473): additive attention.
# - Luong, Pham & Manning 2015, *Effective Approaches to Attention-based NMT* (arXiv:1508.04025): dot-product
#   ("multiplicative") scores.
# - Britz et al. 2017, *Massive Exploration of Neural Machine Translation Architectures* (arXiv:1703.03906): the
#   additive vs dot-product comparison at large d_k the paper cites.
