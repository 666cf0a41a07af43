# %% [markdown]
# # 6. Decoding: greedy, sampling, beam search — and the KV cache
#
# Our [source document](../docs/source_model.md)'s inference outline ends with step 4, "decode to generate the output sequence", and its
# question is how to make that fast. A decoder generates one token at a time: at step $t$ it turns the logits
# of the last position into a distribution $p(y_t \mid y_{<t}) = \mathrm{softmax}(\text{logits}_t)$ and
# picks a token, which becomes the input of step $t+1$.
#
# * **greedy**: $y_t = \arg\max_v p(v \mid y_{<t})$;
# * **sampling**: draw $y_t \sim \mathrm{softmax}(\text{logits}_t / \tau)$ (temperature $\tau$), optionally only among the $k$ most
#   likely tokens (top-k) or the smallest set of probability $\ge p$ (top-p, nucleus);
# * **beam search**: keep the $W$ partial sequences with the highest $\sum_t \log p(y_t\mid y_{<t})$,
#   ranking finished ones by that sum divided by the length penalty $((5+|Y|)/6)^\alpha$.
#
# What a generated token costs, in FLOPs, at context length $t$, for $L$ layers of width $C$ with $F = 4C$
# (projections $8C^2$ and FFN $16C^2$ per position and layer; scores and weighted sum $4\,t\,C$ per query and
# layer; the output layer's $2CV$ left aside):
#
# * recomputing the whole forward pass over the $t$ positions: $\;t \cdot 24 L C^2 + 4 L t^2 C$ — it grows like $t^2$;
# * with the **KV cache**, which keeps each layer's keys and values so that a step feeds only the new token and
#   only its query attends over the cached keys: $\;24 L C^2 + 4 L t C$ — nearly constant while $t \ll 6C$.
#
# Summed over $n$ generated tokens that is $O(n^3)$ against $O(n^2)$ for the attention terms, $O(n^2)$ against
# $O(n)$ for the rest.
#
# Most of the model here is a small random decoder-only LM, so its tokens mean nothing — but every rule and
# every equality below holds for any weights; a section near the end runs the trained dates model.

# %%
import time

import numpy as np

import transformer_np as tn
from transformer_np import decoding as g
from transformer_np import viz

cfg = tn.TransformerConfig.lm_tiny(d_model=32, n_heads=4, n_decoder_layers=2, d_ff=64, vocab_size=12,
                                   dtype="float64")
model = tn.DecoderLM(cfg, seed=0)
prompt = [1, 2, 3]
print(model)

# %% [markdown]
# ## Greedy decoding, step by step
#
# Each step's next-token logits, with and without the cache — they must agree to rounding:

# %%
def run(use_cache, steps=8):
    seen = []
    s = g.LMSession(model, [prompt], use_cache=use_cache)
    out = g.greedy(s, steps, on_step=lambda step, sess, tok: seen.append(sess.next_logits[0].copy()))
    return out[0], np.array(seen)


tokens, with_cache = run(True)
tokens_plain, plain = run(False)
assert tokens == tokens_plain
print("generated:", tokens)
print(f"max |logits with cache - logits recomputed| over {len(plain)} steps: {np.abs(with_cache - plain).max():.1e}")
np.testing.assert_allclose(with_cache, plain, atol=1e-12)

# %% [markdown]
# What did each new token attend to? Under the causal mask, the full forward pass over the final sequence
# shows at row $t$ exactly the weights step $t$ used (nothing after $t$ could influence them).

# %%
seq = np.array([prompt + tokens])
_, weights = model.forward_with_attention(seq)
last = weights[-1][0].mean(axis=0)                         # last layer, averaged over heads: (t, t)
labels = [f"id {t}" for t in seq[0]]                       # keys: the token at each position, by id
rows = slice(len(prompt) - 1, seq.shape[1] - 1)             # the positions that produced new tokens
viz.attention_weights(last[rows], [f"step {i}" for i in range(len(tokens))], labels,
                      title="What each decoding step attended to (last layer, mean over heads)");

# %% [markdown]
# Step through it interactively with a trained encoder-decoder: the `reverse` model's **generation view** shows,
# at each step, the token chosen, its masked self-attention over the output so far, its cross-attention over
# the source, the top-5 next tokens and the cache: self-attention keys and values grow by one position a step,
# the source's cross-attention keys and values are computed once.

# %%
from transformer_np.viz.explorer import task_generation

_, source, steps = task_generation("reverse", "271828", 10)
grow = np.diff([st["kv_bytes"] for st in steps])
print("tokens:", "".join(st["token"] for st in steps), "| cache growth per step (bytes):", sorted({int(g) for g in grow}))
assert len(set(grow)) == 1                                   # one position's k and v per layer, every step
viz.explore("reverse", "271828", generate=10)

# %% [markdown]
# *A page that runs no script — a repository's view of this notebook — leaves the explorer above empty.
# Here is a picture of its generation view (the dates model, step by step);
# [the example pages](../docs/explore/dates.html) open in any browser.*
#
# ![the attention explorer](../docs/explore_seq2seq_generation_view.png)

# %% [markdown]
# ## Sampling: temperature, top-k, top-p

# %%
logits = g.LMSession(model, [prompt]).next_logits
viz.sampling_distributions({
    "τ = 0.5": g.next_token_probs(logits, temperature=0.5)[0],
    "τ = 1": g.next_token_probs(logits)[0],
    "τ = 2": g.next_token_probs(logits, temperature=2.0)[0],
    "top-k = 3": g.next_token_probs(logits, top_k=3)[0],
    "top-p = 0.7": g.next_token_probs(logits, top_p=0.7)[0],
}, base=tn.softmax(logits[0]));

# %% [markdown]
# Live checks of the rules: top-k = 1, a temperature near 0 and beam width 1 all give greedy's tokens;
# top-p = 1 and top-k = V leave the distribution as it is; sampled frequencies follow the probabilities.

# %%
greedy_tokens = g.greedy(g.LMSession(model, [prompt]), 8)
for kwargs in (dict(top_k=1), dict(temperature=1e-9)):
    assert g.sample(g.LMSession(model, [prompt]), 8, rng=np.random.default_rng(0), **kwargs) == greedy_tokens
assert g.beam_search(g.LMSession(model, [prompt]), 1, 8)[0][0] == greedy_tokens[0]
np.testing.assert_allclose(g.next_token_probs(logits, top_p=1.0), tn.softmax(logits), atol=1e-15)
np.testing.assert_allclose(g.next_token_probs(logits, top_k=cfg.vocab_size), tn.softmax(logits), atol=1e-15)

draws = g.sample(g.LMSession(model, [prompt] * 3000), 1, rng=np.random.default_rng(1))
freq = np.bincount([d[0] for d in draws], minlength=cfg.vocab_size) / 3000
print("probabilities:", tn.softmax(logits[0]).round(3))
print("frequencies:  ", freq.round(3))
assert np.abs(freq - tn.softmax(logits[0])).max() < 0.03

# %% [markdown]
# ## Beam search as a tree

# %%
history = []
hyps = g.beam_search(g.LMSession(model, [prompt]), 3, 5,
                     on_step=lambda step, seqs, scores, rows: history.append((seqs, scores)))
for tokens_, score, logp in hyps:
    print(f"score {score:7.3f}  {tokens_}")
viz.beam_tree(history, final=hyps[0][0]);

# %% [markdown]
# ## With trained weights
#
# The same sessions and decoders run the trained dates model of chapter 8 (an encoder-decoder): its 3-best
# list for one input, and greedy decoding of a ragged batch with and without the cache.

# %%
from transformer_np.training import load_trained

dates, params_d, _, _ = load_trained("dates")
dates_model = tn.Transformer.from_config(dates.config, params_d)
src = dates.tokenizer.encode("the 3rd of March, 2021")
for tokens_, score, logp in g.beam_search(g.Seq2SeqSession(dates_model, [src], bos_id=1), 3, 12, eos_id=2):
    print(f"score {score:8.3f}  {dates.tokenizer.decode(tokens_)!r}")  # "" = EOS right away
texts = ["3 Mar 21", "Wednesday, 3 March 2021", "Dec 25, 1999"]
sources = [dates.tokenizer.encode(t) for t in texts]
cached = g.greedy(g.Seq2SeqSession(dates_model, sources, bos_id=1), 12, eos_id=2)
plain = g.greedy(g.Seq2SeqSession(dates_model, sources, bos_id=1, use_cache=False), 12, eos_id=2)
assert cached == plain
for t, out in zip(texts, cached):
    print(f"{t!r:28} -> {dates.tokenizer.decode(out)}")

# %% [markdown]
# ## The KV cache: memory and speed
#
# One step with the cache: only the new token is embedded and projected; its key and value are appended to
# every layer's cache, and its query attends over all t + 1 keys.

# %%
viz.kv_cache_flow();

# %% [markdown]
# Each layer's cache holds K and V, each of shape (B, H, t, D). So every token adds $2\cdot B\cdot H\cdot D$
# values per layer and $2\cdot L\cdot B\cdot H\cdot D$ over all L layers, times the itemsize in bytes — linear in
# $t$. For the paper-base width (C = H·D = 512) in float32 that is 4 KiB per token and layer (B = 1).
#
# First the arithmetic of the costs above, for this chapter's wide model (C = 768, L = 2):

# %%
t = np.arange(1, 513)
C_, L_ = 768, 2
viz.decode_flops(t, 24 * L_ * C_**2 + 4 * L_ * t * C_, t * 24 * L_ * C_**2 + 4 * L_ * t**2 * C_)

# %% [markdown]
# And the cache's size, measured as it grows:

# %%
s = g.LMSession(model, [prompt])
sizes, lengths = [], []
for step in range(20):
    s.append(np.argmax(s.next_logits, axis=-1))
    lengths.append(s.length)
    sizes.append(s.cache_bytes())
per_token = 2 * cfg.n_decoder_layers * 1 * cfg.n_heads * cfg.d_head * 8      # float64: 8 bytes
assert sizes == [n * per_token for n in lengths]
viz.cache_growth(lengths, sizes, per_token);

# %% [markdown]
# Speed, measured live on a model of GPT-2-small width but 2 layers (small enough to run here in seconds).
# Without the cache the time per token grows with the sequence; with it, it stays nearly flat.
# `python -m transformer_np bench decode` measures the full benchmark (4 layers, up to 1024 tokens) — its
# numbers are in the README and its plot is `figures/bench_decode.png`.

# %%
wide = tn.DecoderLM(tn.TransformerConfig(d_model=768, n_heads=12, n_encoder_layers=0, n_decoder_layers=2,
                                         d_ff=3072, vocab_size=4096, max_len=256, norm_first=True,
                                         activation="gelu", architecture="decoder-only"), seed=0)
rows = []
for n in (16, 32, 64):
    row = {"tokens": n}
    for use_cache in (True, False):
        t0 = time.perf_counter()
        g.greedy(g.LMSession(wide, [prompt], use_cache=use_cache), n)
        row["cache_s" if use_cache else "no_cache_s"] = time.perf_counter() - t0
    rows.append(row)
    print(f"{n:3d} tokens: {1e3 * row['cache_s'] / n:6.1f} ms/token with the cache, "
          f"{1e3 * row['no_cache_s'] / n:6.1f} without")
viz.decode_speed(rows, "Measured in this notebook (C=768, 12 heads, 2 layers)");

# %% [markdown]
# ## Exercises
#
# **1.** Write `my_top_k(probs, k)`: keep each row's k largest probabilities, zero the rest, renormalise.

# %%
from transformer_np.teaching import exercises

my_top_k = None  # replace with your function

# %%
exercises.check_top_k(my_top_k)

# %% [markdown]
# **2.** Write `my_cache_bytes(cfg, batch, tokens, itemsize)` for a decoder-only model — with `cfg.n_kv_heads`
# key/value heads where it is set (grouped-query attention, chapter 9), `cfg.n_heads` where it is None — and use
# it: how many MiB does GPT-2 small (12 layers, C = 768) need for one 1024-token sequence in float32?

# %%
my_cache_bytes = None  # replace with your function

# %%
exercises.check_kv_cache_bytes(my_cache_bytes)

# %% [markdown]
# **3.** One step of beam search. The K beams have scores `scores` (K,) (a dead beam has −∞) and the model's
# next-token log-probabilities `log_probs` (K, V). Write `my_beam_step(scores, log_probs, K)` returning
# `(parents, tokens, new_scores)`, each (K,): the K best extensions of all beams together, best first.

# %%
my_beam_step = None  # replace with your function

# %%
exercises.check_beam_step(my_beam_step)

# %% [markdown]
# **4.** One decoding step with a KV cache, for one sequence of H heads. Write
# `my_cache_step(K, V, q, k, v)`: K and V are the cached keys and values (H, t, D); q, k, v the new token's
# (H, 1, D). Append k and v, attend q over all t + 1 keys, and return `(out, K_new, V_new)`. The checker runs it
# from an empty cache and compares every output with full causal attention.

# %%
my_cache_step = None  # replace with your function

# %%
exercises.check_kv_cache_step(my_cache_step)

# %% [markdown]
# ## References
#
# - Vaswani et al. 2017 (arXiv:1706.03762): §6.1 (beam size 4, length penalty α = 0.6).
# - Wu et al. 2016, *Google's Neural Machine Translation System* (arXiv:1609.08144): the length penalty lp(Y).
# - Fan, Lewis & Dauphin 2018, *Hierarchical Neural Story Generation* (arXiv:1805.04833): top-k sampling.
# - Holtzman et al. 2020, *The Curious Case of Neural Text Degeneration* (arXiv:1904.09751): top-p (nucleus)
#   sampling.
# - Pope et al. 2022, *Efficiently Scaling Transformer Inference* (arXiv:2211.05102): the KV cache's memory and
#   the cost of each decoding step.
