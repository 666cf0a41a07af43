# %% [markdown]
# # 3. Multi-head attention
#
# *Attention Is All You Need*, §3.2.2. One attention averages everything a token might want into one vector.
# Multi-head attention runs $h$ attentions in parallel, each on its own learned $D = C/h$-dimensional
# projection, and mixes their concatenated outputs with $W^O$:
#
# $$\mathrm{MultiHead}(Q,K,V) = \mathrm{Concat}(\mathrm{head}_1,\ldots,\mathrm{head}_h)\,W^O,\qquad
#   \mathrm{head}_i = \mathrm{Attention}(QW_i^Q,\ KW_i^K,\ VW_i^V)$$
#
# In code the heads are **an array axis**: project once with a (C, C) matrix, reshape (B, T, C) to
# (B, H, T, D), and one batched matmul attends in every head at once — no Python loop over heads.

# %%
import numpy as np

import transformer_np as tn
from transformer_np import viz
from transformer_np.core import reference
from transformer_np.viz import figures

viz.multi_head_shapes();

# %% [markdown]
# ## Step by step, with the shapes

# %%
rng = np.random.default_rng(0)
B, T, C, H = 1, 6, 16, 4
D = C // H
p = {name: rng.standard_normal(shape) / np.sqrt(C) for name, shape in
     [("w_q", (C, C)), ("w_k", (C, C)), ("w_v", (C, C)), ("w_o", (C, C))]}
p |= {b: np.zeros(C) for b in ("b_q", "b_k", "b_v", "b_o")}
x = figures.sentence_embeddings()                          # (B, T, C)

q = tn.split_heads(tn.linear(x, p["w_q"], p["b_q"]), H)    # (B, H, T, D)
k, v = tn.project_kv(x, x, p["w_k"], p["b_k"], p["w_v"], p["b_v"], n_heads=H)   # (B, H, T, D) each
heads, weights = tn.scaled_dot_product_attention(q, k, v)  # (B, H, T, D), (B, H, T, T)
concat = tn.merge_heads(heads)                             # (B, T, H·D) = (B, T, C)
out = tn.linear(concat, p["w_o"], p["b_o"])                # (B, T, C)
for name, a in [("x", x), ("q", q), ("k", k), ("heads", heads), ("weights", weights), ("concat", concat),
                ("out", out)]:
    print(f"{name:8s}{a.shape}")

# %% [markdown]
# `multi_head_attention` does exactly these steps; it takes queries, keys and values separately (self-attention
# passes the same x three times, cross-attention passes the encoder memory as keys and values).

# %%
mha_out, mha_w = tn.multi_head_attention(x, x, x, **p, n_heads=H)
np.testing.assert_allclose(mha_out, out, atol=1e-12)
# live check against the loop-level version: one head at a time, explicit sums
loop_out, loop_w = reference.loop_multi_head_attention(x[0], x[0], p, H)
np.testing.assert_allclose(mha_out[0], loop_out, atol=1e-12)
np.testing.assert_allclose(mha_w[0], loop_w, atol=1e-12)
print("equal to the loop over heads")

# %% [markdown]
# ## Each head attends its own way

# %%
viz.head_grid(mha_w[0], figures.SENTENCE, figures.SENTENCE, title="Four heads of one attention layer");

# %% [markdown]
# These weights are random. A trained model's heads do learn different jobs — explore them: the sentiment
# classifier trained in this package (2 layers × 4 heads), on a sentence with a negation. Choose a layer and a
# head, hover a word to keep only its lines, click a thumbnail in the model view to open that head
# (`python -m transformer_np explore --model sentiment --text "…" --out page.html` writes the same page to a file).

# %%
from transformer_np.viz.explorer import attentions

page = viz.explore("sentiment", "the plot was not bad at all")
_, (trained,) = attentions("sentiment", "the plot was not bad at all")
np.testing.assert_allclose(trained.weights.sum(-1), 1.0, rtol=1e-5)  # every head's rows: a distribution
print(f"{trained.weights.shape} (L, H, T, T) weights on the page, {len(page.html):,} bytes")
page

# %% [markdown]
# *A page that runs no script — a repository's view of this notebook — leaves the explorer above empty.
# Here is a picture of its head view (the dates model's cross-attention);
# [the example pages](../docs/explore/dates.html) open in any browser.*
#
# ![the attention explorer](../docs/explore_head_view.png)

# %% [markdown]
# ## Concat, then $W^O$ — or a sum over heads
#
# Splitting $W^O$ into its $h$ row blocks $W^O_i$ (each $D\times C$) shows that concatenating and
# projecting is the same as projecting each head and adding: $\mathrm{Concat}(\mathrm{head}_i)\,W^O =
# \sum_i \mathrm{head}_i W^O_i$. Each head writes its own contribution into the output.

# %%
per_head = sum(heads[:, i] @ p["w_o"][i * D:(i + 1) * D] for i in range(H))   # (B, T, C)
np.testing.assert_allclose(concat @ p["w_o"], per_head, atol=1e-12)
print("Concat(heads)·W^O == Σ head_i·W^O_i")

# %% [markdown]
# And with one head and identity projections, multi-head attention is plain attention:

# %%
eye, zero = np.eye(C), np.zeros(C)
ident = dict(w_q=eye, b_q=zero, w_k=eye, b_k=zero, w_v=eye, b_v=zero, w_o=eye, b_o=zero)
one, _ = tn.multi_head_attention(x, x, x, **ident, n_heads=1)
np.testing.assert_allclose(one, tn.scaled_dot_product_attention(x, x, x)[0], atol=1e-12)

# %% [markdown]
# ## Exercises
#
# **1.** Write `my_split_heads(x, H)`: (B, T, C) → (B, H, T, D), head $h$ taking columns $hD\ldots(h+1)D-1$.

# %%
from transformer_np.teaching import exercises

my_split_heads = None  # replace with your function

# %%
exercises.check_split_heads(my_split_heads)

# %% [markdown]
# **2.** Write `my_mha_params(C)`: the number of parameters of one multi-head attention block (four $C\times C$
# matrices and four biases). Does it depend on the number of heads?

# %%
my_mha_params = None  # replace with your function

# %%
exercises.check_mha_param_count(my_mha_params)

# %% [markdown]
# ## References
#
# - Vaswani et al. 2017 (arXiv:1706.03762): §3.2.2 multi-head attention, §3.2.3 its three uses.
# - Jay Mody, *picoGPT* (github.com/jaymody/picoGPT): the same forward in a few dozen NumPy lines, heads as a
#   Python list — here they are an array axis.
# - Michel, Levy & Neubig 2019, *Are Sixteen Heads Really Better than One?* (arXiv:1905.10650) and Voita et al.
#   2019, *Analyzing Multi-Head Self-Attention* (arXiv:1905.09418): what individual heads do, and how many can go.
