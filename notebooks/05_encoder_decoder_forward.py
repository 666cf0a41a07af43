# %% [markdown]
# # 5. The whole encoder-decoder forward pass
#
# *Attention Is All You Need*, §3.1 and Figure 1; and our [source document](../docs/source_model.md)'s PyTorch model
# `Transformer(d_model, nhead, num_layers, num_classes)`. The encoder reads the source tokens into a memory
# (S vectors); the decoder reads the target tokens so far, attends to itself under a causal mask and to the
# memory (cross-attention), and a linear layer turns each position into logits over the vocabulary.
#
# $$\text{logits} = \mathrm{Linear}\big(\mathrm{Decoder}(\mathrm{Emb}(tgt)+PE,\ \mathrm{Encoder}(\mathrm{Emb}(src)+PE))\big)$$
#
# `transformer_np.Transformer` keeps the source document's constructor and call and fixes its bugs: the
# undefined `init_weight` positional parameter (now the sin-cos table), the target fed in without embedding,
# `num_layers` (which nn.Transformer does not accept), the missing causal mask and the unscaled embeddings.
#
# The paper's Figure 1, redrawn with the shape of every array this package passes along each arrow:

# %%
import numpy as np

import transformer_np as tn
from transformer_np import viz
from transformer_np.core import reference
from transformer_np.model import decoder_layer, embed, encoder_layer
from transformer_np.viz import figures

viz.transformer_architecture();

# %%
model = tn.Transformer(d_model=32, nhead=4, num_layers=2, num_classes=16, d_ff=64, max_len=32,
                       dtype="float64", seed=0)
print(model)
src = np.array([[1, 2, 3, 4, 5]])   # (B, S) = (1, 5)
tgt = np.array([[1, 6, 7, 8]])      # (B, T) = (1, 4)

# %% [markdown]
# ## Every intermediate, with its shape

# %%
cfg, p = model.config, model.params


def show(name, a, shape_names):
    print(f"{name:<28}{str(a.shape):<16}{shape_names}")


x = embed(src, p["embed"], cfg)                             # Emb(src)·√C + PE
show("src embedded + PE", x, "(B, S, C)")
for i, lp in enumerate(p["encoder"]["layers"]):
    x, w = encoder_layer(x, lp, cfg)
    show(f"encoder layer {i}", x, f"(B, S, C)   self-attention {w.shape} (B, H, S, S)")
memory = tn.layer_norm(x, **p["encoder"]["norm"], eps=cfg.layer_norm_eps)
show("memory (after final LN)", memory, "(B, S, C)")
y = embed(tgt, p["embed"], cfg)
show("tgt embedded + PE", y, "(B, T, C)")
mask = tn.causal_mask(tgt.shape[1])                          # (T, T)
for i, lp in enumerate(p["decoder"]["layers"]):
    y, (ws, wc) = decoder_layer(y, memory, lp, cfg, self_mask=mask)
    show(f"decoder layer {i}", y, f"(B, T, C)   self {ws.shape} (B, H, T, T), cross {wc.shape} (B, H, T, S)")
y = tn.layer_norm(y, **p["decoder"]["norm"], eps=cfg.layer_norm_eps)
logits = tn.linear(y, **p["out"])
show("logits", logits, "(B, T, V)")
np.testing.assert_allclose(logits, model(src, tgt), atol=1e-12)   # the model's own call does the same
probs = model.predict_proba(src, tgt)
np.testing.assert_allclose(probs.sum(-1), 1.0)
print("next-token distribution rows sum to 1; argmax:", probs.argmax(-1))

# %% [markdown]
# ## Live check: the whole model against loop-level layers

# %%
mem = embed(src, p["embed"], cfg)[0]                     # (S, C): loops work on one sequence
for lp in p["encoder"]["layers"]:
    mem = reference.loop_encoder_layer(mem, lp, cfg)
mem = reference.loop_layer_norm(mem, **p["encoder"]["norm"], eps=cfg.layer_norm_eps)
out = embed(tgt, p["embed"], cfg)[0]
for lp in p["decoder"]["layers"]:
    out = reference.loop_decoder_layer(out, mem, lp, cfg, tn.causal_mask(4))
out = reference.loop_layer_norm(out, **p["decoder"]["norm"], eps=cfg.layer_norm_eps)
np.testing.assert_allclose(model(src, tgt)[0], reference.loop_linear(out, **p["out"]), atol=1e-12)
print("vectorised model == loop-level model")

# %% [markdown]
# ## Parity with PyTorch
#
# `interop.to_torch` builds the same model in torch (embedding, sin-cos buffer, `nn.Transformer`, `fc_out`)
# with the weights copied. When torch is installed, the logits must agree to float64 rounding.

# %%
try:
    import torch
except ImportError:
    torch = None
    print("torch is not installed: parity check skipped (install the test extra to run this cell: pip install -e '.[test]')")
if torch is not None:
    from transformer_np import interop

    module = interop.to_torch(model)
    want = module(torch.from_numpy(src), torch.from_numpy(tgt)).detach().numpy()
    print(f"max |NumPy - torch| = {np.abs(model(src, tgt) - want).max():.1e}")
    np.testing.assert_allclose(model(src, tgt), want, atol=1e-10)

# %% [markdown]
# ## The three kinds of attention
#
# With random (untrained) weights the patterns mean nothing yet — training is a later chapter — but their
# shapes already show the rules: the encoder's self-attention is full, the decoder's is causal (upper triangle
# exactly zero), and cross-attention maps T target positions onto S source positions.

# %%
attention, src_words, tgt_words = figures.tiny_translation_attention()
viz.encoder_decoder_attention(attention, src_words, tgt_words, title="Random, untrained weights");

# %%
_, att = model.forward_with_attention(src, tgt)
for w in att["decoder_self"]:
    assert np.all(np.triu(w[0], 1) == 0)       # every head, every layer: nothing from the future
print({name: [w.shape for w in ws] for name, ws in att.items()})

# %% [markdown]
# A trained encoder-decoder shows what the three kinds are for. The `dates` model of chapter 8 rewrites a date
# into ISO form; below, its page: choose *decoder cross-attention* and step through the **generation view** —
# each output character is decoded with the KV cache, and its cross-attention row shows which characters of
# the source it reads (the month's digits read "March"). The cache after each step holds the self-attention
# keys and values of the output so far plus the source's cross-attention keys and values, computed once.

# %%
from transformer_np.viz.explorer import task_generation

text = "the 3rd of March, 2021"
prompt, source, steps = task_generation("dates", text, 12)
print("".join(prompt + [st["token"] for st in steps]), "| cache bytes per step:", [st["kv_bytes"] for st in steps])
assert steps[-1]["token"] == "</s>"  # it stopped at its end token, before the 12 allowed
viz.explore("dates", text, generate=12)

# %% [markdown]
# *A page that runs no script — a repository's view of this notebook — leaves the explorer above empty.
# Here is a picture of its generation view (the dates model, step by step);
# [the example pages](../docs/explore/dates.html) open in any browser.*
#
# ![the attention explorer](../docs/explore_seq2seq_generation_view.png)

# %% [markdown]
# ## How many parameters has the paper's base model?
#
# The paper's Table 3 gives 65 M for the base model. `TransformerConfig.paper_base()` counts 82 M, because by
# default the output layer is its own C × V matrix (plus a bias). The paper ties it to the embeddings (§3.4:
# "we share the same weight matrix between the two embedding layers and the pre-softmax linear
# transformation"); `tie_embeddings=True` does the same — logits $= y E^\top$, and the table's gradient is
# the sum of its two uses:

# %%
untied = tn.count_params(tn.model.param_shapes(tn.TransformerConfig.paper_base()))
tied = tn.count_params(tn.model.param_shapes(tn.TransformerConfig.paper_base(tie_embeddings=True)))
C, V = 512, 37000
assert untied - tied == C * V + V  # the output matrix and its bias
print(f"untied {untied:,}   tied {tied:,}   difference {untied - tied:,} = C·V + V")
print(f"(both counts include the layer norms after each stack, {2 * 2 * C:,} parameters that come from "
      "nn.Transformer, not from the paper)")

# %% [markdown]
# Tied, the count is 63.1 M against the paper's 65 M. The remaining ≈ 1.9 M are not accounted for by the
# paper's text — its 65 M is rounded, and its shared vocabulary of "about 37000 tokens" is approximate
# (≈ 3,700 more tokens would add 1.9 M); we state the gap rather than guess.
#
# ## Exercises
#
# **1.** Write `my_param_count(cfg)`: the number of parameters of a `TransformerConfig` model (embedding table
# V×C; per encoder layer one attention block, two layer norms, an FFN; per decoder layer two attention blocks,
# three layer norms, an FFN; a final norm after each stack when cfg.final_norm; the output layer C×V plus bias).
# It is checked on random configurations too, with every option a `TransformerConfig` has: grouped-query heads
# (`cfg.n_kv_heads` key/value heads, None for H: K and V are C × H_kv·D), tied embeddings (no output layer: the
# logits reuse the table) and `architecture="decoder-only"` (no encoder, no cross-attention, two norms a layer).
# Then evaluate it on the paper's base model.

# %%
from transformer_np.teaching import exercises

my_param_count = None  # replace with your function

# %%
base = tn.TransformerConfig.paper_base()
exercises.check_parameter_count(my_param_count, base)

# %% [markdown]
# **2.** In a target of length T, change the token at position t. Write `my_changed(T, t)`: the list of
# positions whose logits change. (The checker runs a random model to find out.)

# %%
my_changed = None  # replace with your function

# %%
exercises.check_causal_dependence(my_changed)

# %% [markdown]
# ## References
#
# - Vaswani et al. 2017 (arXiv:1706.03762): §3.1 and Figure 1 (the encoder-decoder), Table 3 (the base model's
#   sizes and its 65 M parameters).
# - Sutskever, Vinyals & Le 2014, *Sequence to Sequence Learning with Neural Networks* (arXiv:1409.3215).
# - PyTorch's `torch.nn.Transformer` documentation: the layer the source document's class wraps, and the
#   parity oracle of this chapter.
# - *The Annotated Transformer* (nlp.seas.harvard.edu/annotated-transformer): `EncoderDecoder`, `make_model`.
