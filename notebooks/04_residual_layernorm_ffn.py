# %% [markdown]
# # 4. Residual connections, layer norm and the feed-forward network
#
# *Attention Is All You Need*, §3.1 and §3.3. Every sublayer $f$ (attention or feed-forward) is wrapped as
# "Add & Norm": the **residual** $x + f(x)$ keeps a direct path for the signal and the gradient, and **layer
# norm** rescales each token's vector. The **feed-forward network** is the same two-layer MLP applied at each
# position.
#
# $$\mathrm{Residual}(x) = x + f(x) \qquad
#   \mathrm{LN}(x) = \gamma \odot \frac{x-\mu}{\sqrt{\sigma^2+\epsilon}} + \beta \qquad
#   \mathrm{FFN}(x) = \max(0,\ xW_1+b_1)\,W_2 + b_2$$
#
# with $\mu$ and the biased variance $\sigma^2 = \frac1C\sum_c (x_c-\mu)^2$ taken over each token's C
# features, and $\epsilon$ inside the square root (as torch and BERT do).

# %%
import math

import numpy as np

import transformer_np as tn
from transformer_np import viz
from transformer_np.core import reference
from transformer_np.viz import figures

rng = np.random.default_rng(0)

# %% [markdown]
# ## Layer norm: the call and a live check

# %%
x = rng.standard_normal((4, 16)) * rng.uniform(0.5, 5, (4, 1)) + rng.normal(0, 3, (4, 1))   # (T, C)
gamma, beta = np.ones(16), np.zeros(16)
y = tn.layer_norm(x, gamma, beta, eps=1e-5)
np.testing.assert_allclose(y, reference.loop_layer_norm(x, gamma, beta, 1e-5), atol=1e-12)
np.testing.assert_allclose(y.mean(-1), 0, atol=1e-12)      # every token: mean 0 ...
np.testing.assert_allclose(y.var(-1), 1, atol=1e-4)        # ... and variance 1 (up to eps)
print("token means before:", x.mean(-1).round(2), " after:", y.mean(-1).round(12))

# %%
many = rng.standard_normal((512, 64)) * rng.uniform(0.2, 5, (512, 1)) + rng.normal(0, 3, (512, 1))
viz.layer_norm_statistics(many, tn.layer_norm(many, np.ones(64), np.zeros(64)));

# %% [markdown]
# ## The residual stream, post-LN and pre-LN
#
# The paper normalises *after* the residual add: $\mathrm{LN}(x + f(x))$ (post-LN). Most models since GPT-2
# normalise the sublayer's *input* instead: $x + f(\mathrm{LN}(x))$ (pre-LN). Xiong et al. (2020) show that at
# initialisation post-LN's gradients near the output are large, which is why it needs a learning-rate
# warm-up, and report that pre-LN trained well with a shorter (or no) warm-up in their experiments — a finding
# about their settings, not a guarantee. transformer_np has both behind one option,
# `TransformerConfig(norm_first=...)`. The two blocks, drawn:

# %%
viz.residual_blocks();

# %% [markdown]
# Post-LN keeps every token's vector at norm $\approx\sqrt{C}$; pre-LN lets the stream grow layer by layer:

# %%
viz.residual_stream_norms(figures.residual_norms_through_stack());

# %% [markdown]
# Same weights, both orderings: the outputs differ — they are two different functions of the input.

# %%
post = tn.TransformerConfig.tiny(dtype="float64")
pre = post.replace(norm_first=True)
layer = tn.init_params(post, seed=0)["encoder"]["layers"][0]
h = rng.standard_normal((1, 5, post.d_model))
y_post, _ = tn.encoder_layer(h, layer, post)
y_pre, _ = tn.encoder_layer(h, layer, pre)
np.testing.assert_allclose(y_post[0], reference.loop_encoder_layer(h[0], layer, post), atol=1e-12)
np.testing.assert_allclose(y_pre[0], reference.loop_encoder_layer(h[0], layer, pre), atol=1e-12)
print(f"max |post-LN - pre-LN| = {np.abs(y_post - y_pre).max():.3f}")
print(f"token norms: post-LN {np.linalg.norm(y_post, axis=-1).round(2)}  pre-LN {np.linalg.norm(y_pre, axis=-1).round(2)}")

# %% [markdown]
# The gradients, measured: the norm of each layer's parameter gradient at initialisation in a 12-layer stack,
# for one fixed random direction $g$ of the loss $L = \sum y \odot g$ on the stack's output. Post-LN's gradients
# do not shrink with depth — in this run they are largest in the upper layers, as Xiong et al.'s analysis of
# post-LN at initialisation predicts; pre-LN's shrink steadily (about 3× from the first layer to the last) — the
# mismatch NormFormer (Shleifer et al. 2021) observed in pre-LN models, early layers getting larger gradients
# than later ones — because each layer adds to a residual stream that keeps growing (the picture above), so each
# matters less. Both are one random
# initialisation of one small stack: a picture of the mechanism, not a measurement of training.

# %%
grad_norms = figures.gradient_norms_through_stack()
viz.gradient_norms(grad_norms)
print({name: [round(v, 2) for v in values[::3]] for name, values in grad_norms.items()})

# %% [markdown]
# A residual with $f = 0$ is the identity: $x + 0 = x$. With pre-LN a whole layer whose sublayers output 0 passes
# its input through unchanged; with post-LN it does not — $\mathrm{LN}(x + 0) = \mathrm{LN}(x) \ne x$ — so a
# post-LN stack cannot start out as "doing nothing":

# %%
assert np.array_equal(tn.residual(h, np.zeros_like(h)), h)
zero = {**layer, "self_attn": {k: np.zeros_like(v) for k, v in layer["self_attn"].items()},
        "ffn": {k: np.zeros_like(v) for k, v in layer["ffn"].items()}}
assert np.allclose(tn.encoder_layer(h, zero, pre)[0], h)                # pre-LN: the identity
print("post-LN layer with f = 0 changes its input by", float(np.abs(tn.encoder_layer(h, zero, post)[0] - h).max()))

# %% [markdown]
# ## The feed-forward network, ReLU and GELU
#
# The paper's FFN uses ReLU. BERT and GPT use GELU, $x\,\Phi(x) = \frac{x}{2}\left(1 + \mathrm{erf}(x/\sqrt2)\right)$
# — here in its exact erf form (not the tanh approximation), matching `math.erf` to 1e-7.

# %%
viz.activations();

# %%
xs = np.linspace(-6, 6, 1001)
exact = np.array([0.5 * t * (1 + math.erf(t / math.sqrt(2))) for t in xs])
print(f"max |tn.gelu - x·Φ(x) via math.erf| = {np.abs(tn.gelu(xs) - exact).max():.1e}")
assert np.abs(tn.gelu(xs) - exact).max() <= 1e-7

p = dict(w1=rng.standard_normal((16, 64)) / 4, b1=np.zeros(64), w2=rng.standard_normal((64, 16)) / 8, b2=np.zeros(16))
for act in ("relu", "gelu"):
    ffn = tn.feed_forward(x, **p, activation=act)                  # (T, C) -> (T, F) -> (T, C)
    np.testing.assert_allclose(ffn, reference.loop_feed_forward(x, **p, activation=act), atol=1e-12)
print("FFN equals its loop-level version with both activations")

# %% [markdown]
# ## Exercises
#
# **1.** Write `my_layer_norm(x, gamma, beta, eps)` over the last axis (biased variance, eps inside the root).

# %%
from transformer_np.teaching import exercises

my_layer_norm = None  # replace with your function

# %%
exercises.check_layer_norm(my_layer_norm)

# %% [markdown]
# **2.** Write `my_gelu(x)`, the exact GELU. (`scipy.special.erf` is vectorised; `math.erf` is not.)

# %%
my_gelu = None  # replace with your function

# %%
exercises.check_gelu(my_gelu)

# %% [markdown]
# ## References
#
# - Vaswani et al. 2017 (arXiv:1706.03762): §3.1 (residual + layer norm around each sublayer), §3.3 the
#   position-wise feed-forward network, §5.4 residual dropout.
# - He et al. 2016, *Deep Residual Learning for Image Recognition* (arXiv:1512.03385): residual connections.
# - Ba, Kiros & Hinton 2016, *Layer Normalization* (arXiv:1607.06450).
# - Xiong et al. 2020, *On Layer Normalization in the Transformer Architecture* (arXiv:2002.04745): post-LN vs
#   pre-LN gradients at initialisation and warm-up.
# - Hendrycks & Gimpel 2016, *Gaussian Error Linear Units* (arXiv:1606.08415).
