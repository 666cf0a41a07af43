# %% [markdown]
# # 11. Making it smaller: quantization, mixed precision, pruning
#
# Our source document answers "how do we make Transformer inference faster?" with three things: faster
# hardware, **model compression** — quantization and pruning — and **mixed precision**. This chapter writes each
# technique as a formula, runs it on SmolLM2-135M-Instruct (chapter 9), and measures what it costs in quality
# and saves in bytes.
#
# The quality measure is **perplexity** on a fixed text shipped with the package — docstrings of the Python
# standard library, 23,294 SmolLM2 tokens — and, disjoint from it, a calibration text for the methods that need
# to see activations:
#
# $$\mathrm{PPL} = \exp\Big(-\frac1N\sum_t \log p(x_{t+1}\mid x_{\le t})\Big)$$
#
# Here we measure on the first 256 tokens to keep the notebook quick; `python -m transformer_np bench quality`
# measures every method on the whole text (its table is at the end).

# %%
import json
from pathlib import Path

import numpy as np

import transformer_np as tn
from transformer_np import viz
from transformer_np.core import tiled
from transformer_np.efficient import compress as C
from transformer_np.efficient import precision, prune, quality
from transformer_np.efficient import quantize as Q
from transformer_np.pretrained import load_smollm2

model = load_smollm2()
cfg = model.config
eval_ids = model.tokenize(quality.eval_text())
cal_ids = model.tokenize(quality.calibration_text())
ids = eval_ids[:256]
print(f"evaluation text: {len(eval_ids):,} tokens; calibration text: {len(cal_ids):,} tokens")


def ppl(method, **options):
    """Perplexity of SmolLM2 compressed by ``method`` on the first 256 evaluation tokens."""
    return quality.measure(model, method, ids, recorders, decode_tokens=0, kl=False, **options)["perplexity"]


recorders = None
base = ppl("float32")
print(f"float32 perplexity on {len(ids)} tokens: {base:.3f}")

# %% [markdown]
# ## 1. Integers and a scale
#
# Symmetric ("absmax") quantization to $b$ bits keeps, for each group of numbers, one float scale and one
# small integer per number:
#
# $$s = \frac{\max_{\text{group}}|x|}{2^{b-1}-1},\qquad q = \mathrm{clip}\big(\mathrm{round}(x/s),\ -(2^{b-1}-1),\ 2^{b-1}-1\big),
#   \qquad \hat x = s\,q,\qquad |x-\hat x| \le s/2 .$$
#
# The group decides the error: one scale for the whole **tensor**, one per output **channel** (a column of our
# (C_in, C_out) weights), or one per run of $g$ inputs (**groups** of 32, 64, 128). One large weight stretches
# its group's grid, and every other number of the group is rounded more coarsely. A matrix of layer 5:

# %%
w = model.params["decoder"]["layers"][5]["ffn"]["w_down"]            # (F, C) = (1536, 576)
schemes = {"int8 per tensor": dict(bits=8, axis=None), "int8 per channel": dict(bits=8, axis=0),
           "int4 per channel": dict(bits=4, axis=0), "int4 groups of 32": dict(bits=4, axis=0, group_size=32)}
deq = {}
for name, kw in schemes.items():
    qt = Q.quantize_symmetric(w, kw["bits"], kw["axis"], kw.get("group_size"), pack=kw["bits"] == 4)
    deq[name] = Q.dequantize(qt)
    err = np.abs(deq[name] - w)
    print(f"{name:18s} {qt.bits_per_weight:5.2f} bits/weight   max error {err.max():.2e}   "
          f"rms error {np.sqrt(np.mean(err ** 2)):.2e}")
viz.quantization_errors(w, deq);

# %% [markdown]
# The grid itself, for the first 24 weights of one output channel at 4 bits (15 levels):

# %%
col = w[:24, 7]
step = np.abs(w[:, 7]).max() / 7
viz.rounding_grid(col, step, 4, title=f"int4, one scale for output channel 7: s = max|x| / 7 = {step:.4f}");

# %% [markdown]
# Two 4-bit integers share a byte: value $2i$ in the low nibble, $2i+1$ in the high one (negative values in
# two's complement). Packing is lossless on the grid:

# %%
q = np.array([-8, 7, 0, -1, 3, -4], dtype=np.int8)
packed = Q.pack_int4(q)
print("q:", q, " bytes:", [f"{b:08b}" for b in packed], " back:", Q.unpack_int4(packed, q.size))

# %% [markdown]
# ## 2. Weight-only quantization: where the bytes go
#
# The simplest use: store the weights as integers and dequantize each matrix just before its product
# (`WeightOnlyMatrix`). SmolLM2's own file already does this — its matrices are llama.cpp's Q4_1 blocks (32 weights,
# a 16-bit scale and a 16-bit minimum) and its embedding Q8_0; `load_smollm2(keep_quantized=True)` keeps those
# blocks (re-laid so that a product can read them) and dequantizes at use — tile by tile: `core.tiled` widens a
# few hundred rows into a buffer that stays in the cache, multiplies them with BLAS, and moves on, so no matrix
# is ever float32 whole. The same values (the logits agree to float32 rounding), a fifth of the memory:

# %%
kept = load_smollm2(keep_quantized=True)
np.testing.assert_allclose(kept.logits(ids[:32]), model.logits(ids[:32]), atol=1e-3)  # sums in another order
for name, m in (("float32 (dequantized once at load)", model), ("the file's Q4_1/Q8_0 blocks, kept", kept)):
    print(f"{name:36s} weights {tn.core.tree.params_nbytes(m.params) / 1e6:6.1f} MB")

# %% [markdown]
# ### Fewer bytes should decode faster — the roofline
#
# Decoding one token reads every weight once and does two FLOPs per weight: about 0.5 FLOP per byte in float32,
# far below the ~10 FLOPs per byte where this machine's products become compute-bound (chapter 12). So a decode
# step is **memory-bound**, and the roofline of chapter 12 predicts its speed from the bytes alone:
#
# $$\text{tokens/s} \le \frac{\text{bandwidth}}{\text{bytes read per token}} = \frac{\text{bandwidth}}{\text{weight bytes} + \text{KV cache bytes}}$$
#
# Halve the bytes (bfloat16), quarter them (int8), or take a sixth (4-bit) and the bound rises by as much — which
# is what llama.cpp, gpt-fast's int8 and every GPU engine get. `python -m transformer_np bench llm` measures each
# stored form of SmolLM2's weights against its own roofline; its committed run (`docs/bench_llm.json`, on the
# project's 2-core machine) is read here:

# %%
root = Path.cwd() if (Path.cwd() / "docs").exists() else Path.cwd().parent
run = json.loads((root / "docs/bench_llm.json").read_text())
print(f"copy bandwidth {run['copy_bandwidth_gb_s']:.1f} GB/s;  decode of {run['decode'][-1]['new_tokens']} tokens")
print(f"{'weights':14s} {'MB':>5s} {'roofline tok/s':>14s} {'measured':>9s} {'of roofline':>11s} {'vs float32':>10s}")
for r in run["formats"]:
    print(f"{r['weights']:14s} {r['weight_bytes'] / 1e6:5.0f} {r['roofline_tokens_per_s']:14.1f} "
          f"{r['tokens_per_s_long']:9.1f} {r['fraction_of_roofline']:11.0%} {r['speedup']:9.2f}x")
assert max(r["speedup"] for r in run["formats"][1:]) < 1.1  # what the text below says of this run
if run.get("llama_cpp"):
    a = run["llama_cpp"]
    print(f"llama.cpp on the same file (its own kernels): {a['decode'][-1]['tokens_per_s']:.1f} tok/s")

# %% [markdown]
# ### …but here they do not, yet: where the time goes
#
# The table is the honest result: on this machine no narrow format decodes clearly faster than float32 — the best,
# int8, is within about 10% of it, the others are slower — although each reads a half to a sixth of the bytes. The roofline is not wrong; it counts the bytes read from memory, and a NumPy product cannot read
# narrow values: BLAS multiplies float32 only. So each tile is first *widened* — read as codes, written as float32
# into a cache-sized buffer — and then read again by BLAS. The widening is extra work the roofline does not
# count, and it is measured here per value, on one thread, beside what it costs to simply copy a float32 value:

# %%
widen = {fmt: tiled.widen_ns_per_value(fmt) for fmt in ("float32", "bfloat16", "int8", "uint4", "float16",
                                                       "float8_e4m3fn")}
for fmt, ns in widen.items():
    what = "copy a float32 value" if fmt == "float32" else f"widen a {fmt} value to float32"
    print(f"{what:40s} {ns:5.2f} ns   ({ns / widen['float32']:4.1f}x the copy)")

# %% [markdown]
# Three things follow, each visible in the numbers above:
#
# * **The cheapest widenings — int8's cast, bfloat16's shift, 4-bit's mask and shift — each cost about what
#   copying a float32 value costs**; then BLAS reads the widened tile again, and a format with a scale per group of
#   32 (the file's Q4_1) adds a small product per group. The bytes saved from memory are spent again in cache, so
#   the best, int8, only about matches float32 and the others fall behind (`docs/performance.md` breaks a decode
#   step down). The win needs the widened values never to be written at all.
# * **float16 and float8 widen three to four times more slowly.** NumPy's own float16 → float32 cast handles one
#   value at a time (2.4 ns here: it does not use the CPU's F16C conversion instructions), and so does ml_dtypes'
#   float8 cast. The product instead moves float16's sign, exponent and mantissa bits to float32's places and
#   multiplies once by $2^{112}$ to re-bias the exponent — five passes in cache, exact for every finite value
#   (`core.tiled`); float8_e4m3fn gathers from the table of its 256 values, because a quarter of a weight
#   matrix's e4m3 values are subnormal and a multiply on them takes the CPU's slow path. So float16 decodes at
#   under half of float32's speed although its bytes are half.
# * **What a real kernel does differently.** llama.cpp's CPU kernels and every GPU kernel (Marlin, bitsandbytes,
#   the FP8 GEMMs of an H100) dequantize *in registers*, inside the multiply loop: a few integer instructions per
#   value, hidden under the memory reads, and no float32 copy ever exists. A GPU's tensor cores also take
#   bfloat16, float16 and float8 directly. Then decoding runs at the speed of its bytes — the roofline column —
#   as the llama.cpp line above shows on this very machine and file: several times the NumPy rows.
#
# So the lesson of the table is not "quantization slows decoding" — it is "fewer bytes decode faster *when
# dequantization is fused into the product*", and NumPy can fuse it only as far as the cache.

# %% [markdown]
# ## 3. Mixed precision
#
# Storing the weights as 16- or 8-bit floats halves or quarters them. What each format can hold:

# %%
for name in precision.FORMATS:
    largest, eps = precision.format_limits(name)
    print(f"{name:14s} largest {largest:10.4g}   spacing above 1: {eps:.3g}")
for name in ("bfloat16", "float16", "float8_e4m3fn"):
    print(f"weights stored as {name:14s} perplexity {ppl(name):.3f}   (float32 {base:.3f})")

# %% [markdown]
# The products still accumulate in float32; some operations must stay float32 altogether. Each breaks in a
# low precision, on numbers this model produces:
#
# * **norm statistics**: RMSNorm's $\sum_c x_c^2$ over C = 576 channels overflows float16 (largest 65,504) as soon
#   as the activations reach about 11 — and layer 11's reach hundreds (section 4);
# * **softmax and log-softmax of the logits**: over V = 49,152 tokens, float16's 11-bit mantissa rounds the sum of
#   the exponentials, and the log-probabilities that the loss and sampling read are off by up to ~1e-2;
# * **casts past a format's range**: float8_e4m3fn has no infinity — 500 becomes NaN.

# %%
x = np.full((1, 576), 11.0, np.float32)
print("sum of squares of 576 values of 11:  float32", precision.sum_of_squares(x, np.float32)[0],
      "  float16", precision.sum_of_squares(x, np.float16)[0])
logits = model.logits(ids[:8])
ref = precision.log_softmax_in(logits, np.float64)
for dtype in (np.float32, np.float16):
    print(f"log-softmax computed in {np.dtype(dtype).name}: max error {np.abs(precision.log_softmax_in(logits, dtype) - ref).max():.1e}")
print("500 stored as float8_e4m3fn:", precision.round_trip(np.array([500.0]), "float8_e4m3fn")[0],
      "  as float8_e5m2:", precision.round_trip(np.array([500.0]), "float8_e5m2")[0])

# %% [markdown]
# ## 4. Activations and their outliers
#
# Quantizing the *activations* too (W8A8) lets the products run on integer units — but activations are much
# harder than weights. `record_activations` runs the calibration text through the model and keeps, for every
# input channel $j$ of every matrix, $\max|X_j|$ (and $\sum X_j^2$, for Wanda below):

# %%
recorders = quality.record_activations(model, cal_ids[:1024])
L = cfg.n_layers
stats = lambda name: np.array([[recorders[f"decoder/layers/{l}/{name}"].absmax.max(),  # noqa: E731
                                 np.median(recorders[f"decoder/layers/{l}/{name}"].absmax)] for l in range(L)])
per_layer = {"attention input (after RMSNorm)": stats("attn/w_q"), "FFN down-projection input": stats("ffn/w_down")}
worst = max(range(L), key=lambda l: per_layer["FFN down-projection input"][l, 0] / per_layer["FFN down-projection input"][l, 1])
channel = recorders[f"decoder/layers/{worst}/ffn/w_down"].absmax
print(f"layer {worst}: the largest input channel of w_down reaches {channel.max():.0f}, "
      f"{channel.max() / np.median(channel):.0f}x the median channel")
viz.activation_outliers(per_layer, channel, f"layer {worst}, FFN down-projection input");

# %% [markdown]
# A per-token scale $s = \max_j |x_j| / 127$ is set by the outlier channel: every other channel of that token is
# rounded onto a grid hundreds of times too coarse. Three answers:
#
# * **W8A8** as it is: int8 weights per output channel × int8 activations per token, summed exactly in int32 and
#   rescaled: $y = (s_x \otimes s_w) \odot (q_x\,q_w)$;
# * **SmoothQuant** (Xiao et al. 2023): move range from the activations to the weights with
#   $s_j = \max|X_j|^{\alpha} / \max|W_j|^{1-\alpha}$, dividing the norm's $\gamma_j$ by $s_j$ and multiplying row $j$
#   of the matrices it feeds by $s_j$ — the same function, smoother activations;
# * **LLM.int8()** (Dettmers et al. 2022): the input columns with any $|x| \ge 6$ go through a float product.

# %%
w_q = model.params["decoder"]["layers"][worst]["ffn"]["w_down"]
xs = np.random.default_rng(0).standard_normal((4, w_q.shape[0])).astype(np.float32)
m = Q.W8A8Matrix(w_q)
xq = Q.quantize_symmetric(xs, 8, axis=-1)
exact = xq.q.reshape(xs.shape).astype(np.int64) @ m.w_q.astype(np.int64)   # what an int32 accumulator holds
assert np.array_equal(xs @ m, exact.astype(np.float32) * xq.scale.reshape(-1, 1) * m.w_scale)
print("W8A8's integer path equals its formula, bit for bit")

before = model.logits(ids[:32])
params = model.params
model.params = C.smoothquant_fold(params, recorders)   # γ / s in every norm, s · W in the rows it feeds
after = model.logits(ids[:32])
model.params = params
print(f"SmoothQuant's fold changes the float model's logits by at most {np.abs(after - before).max():.1e} "
      f"(they reach {np.abs(before).max():.0f}): the same function")
for method in ("w8a8", "smoothquant", "llm.int8", "kv-int8"):
    print(f"{method:12s} perplexity {ppl(method):.3f}   (float32 {base:.3f})")

# %% [markdown]
# `kv-int8` leaves the weights alone and stores the KV cache as int8 with one scale per token and head: a
# quarter of the cache's bytes (plus 4/D for the scales) for almost no loss — the cache, not the weights, is
# what grows with long contexts (chapter 10).

# %% [markdown]
# ## 5. Pruning
#
# Zero out weights, keep the shapes. **Magnitude** pruning drops the smallest $|W_{ij}|$; **Wanda** (Sun et al.
# 2023) scores $|W_{ij}|\cdot\|X_i\|_2$ — a small weight on a loud input matters — and compares the scores within
# each output; **2:4** keeps 2 of every 4 consecutive inputs of an output, the pattern sparse tensor cores run
# at twice the speed. The masks on one matrix:

# %%
norms = np.sqrt(recorders["decoder/layers/5/ffn/w_down"].sumsq)
viz.mask_patterns({"magnitude 50%": prune.magnitude_mask(w, 0.5), "Wanda 50%": prune.wanda_mask(w, norms, 0.5),
                   "2:4": prune.n_m_mask(w, 2, 4)});

# %%
for method, options in (("magnitude", {"sparsity": 0.5}), ("wanda", {"sparsity": 0.5}), ("2:4", {}),
                        ("wanda-2:4", {})):
    print(f"{method:10s} {str(options or ''):20s} perplexity {ppl(method, **options):10.3f}   (float32 {base:.3f})")

# %% [markdown]
# ### Attention heads
#
# A head can be removed by zeroing its rows of $W_O$. Michel et al. (2019) rank heads by
# $I_h = \mathbb{E}_x\,|\partial L/\partial \xi_h|$, the gradient of a gate $\xi_h = 1$ on each head's output —
# which is $\sum W_O \odot \partial L/\partial W_O$ over the head's rows, so the classifier's own backward gives
# it. On the sentiment classifier of chapter 8, pruning heads from the least to the most important:

# %%
from transformer_np.model import classifier_logits, classifier_loss
from transformer_np.training import load_trained
from transformer_np.training.tasks import pad_batch

task, params_s, _, _ = load_trained("sentiment")
cfg_s = task.config
paths = [f"encoder/layers/{l}/self_attn/w_o" for l in range(cfg_s.n_encoder_layers)]
examples = task.val[:200]
grads = (classifier_loss(params_s, pad_batch([task.tokenizer.encode(x)]), np.array([y]), cfg_s)[1] for x, y in examples)
importance = prune.head_gate_importance(params_s, grads, paths, cfg_s.n_heads)
viz.layer_head_scores({"I_h (scaled to the largest)": importance / importance.max()})

ids_s = pad_batch([task.tokenizer.encode(x) for x, _ in task.test])
labels = np.array([y for _, y in task.test])
order = np.argsort(importance, axis=None)
for n in range(0, importance.size + 1, 2):
    pruned = params_s
    for flat in order[:n]:
        l, h = divmod(int(flat), cfg_s.n_heads)
        pruned = tn.core.tree.map_weights(pruned, lambda p, w, l=l, h=h: prune.head_mask_w_o(w, [h], cfg_s.d_head) if p == paths[l] else w)
    acc = np.mean(np.argmax(classifier_logits(pruned, ids_s, cfg_s)[0], -1) == labels)
    print(f"{n} of {importance.size} heads pruned (least important first): test accuracy {acc:.3f}")

# %% [markdown]
# MiniLM has no classifier either, but it has the loss it was fine-tuned with: the **multiple-negatives ranking
# loss** — each sentence must pick its paraphrase out of a batch, the batch's other paraphrases being the
# negatives: $L = -\frac{1}{N}\sum_i \log \mathrm{softmax}_j(20 \cos(a_i, p_j))_i$. Its backward through the
# encoder (`pretrained.minilm.ranking_loss`, checked against finite differences) gives Michel's $I_h$ from 24
# paraphrase pairs written for the package (`sentences.PARAPHRASE_PAIRS`), in batches of 8. Then heads are pruned
# least important first, most important first, and in a random order, and each pruned model is scored on what
# the importance never saw: the other 24 pairs (retrieval accuracy, and the margin of the right paraphrase over
# the best wrong one) and the shipped search sentences (cosine to the unpruned embeddings).

# %%
from transformer_np.pretrained import load_minilm
from transformer_np.efficient.head_pruning import head_importance, heads_pruned, pair_retrieval
from transformer_np.pretrained.sentences import PARAPHRASE_PAIRS, SEARCH_SENTENCES

minilm = load_minilm()
importance_m = head_importance(minilm, PARAPHRASE_PAIRS[:24])
viz.layer_head_scores({"MiniLM: I_h (scaled to the largest)": importance_m / importance_m.max()})
reference = minilm.encode(SEARCH_SENTENCES)
orders = {"least important first": prune.heads_by_importance(importance_m),
          "most important first": prune.heads_by_importance(-importance_m),
          "random order": [tuple(h) for h in np.random.default_rng(0).permutation(prune.heads_by_importance(importance_m))]}
for n in (12, 24, 36, 48):
    for name, order in orders.items():
        pruned_m = heads_pruned(minilm, order[:n])
        r = pair_retrieval(pruned_m, PARAPHRASE_PAIRS[24:])
        cos = np.sum(pruned_m.encode(SEARCH_SENTENCES) * reference, axis=1).mean()
        print(f"{n} of 72 heads pruned, {name:22s}: held-out retrieval {r['accuracy']:.3f}, margin {r['margin']:.3f}, "
              f"cosine to unpruned {cos:.3f}")
print(f"unpruned: margin {pair_retrieval(minilm, PARAPHRASE_PAIRS[24:])['margin']:.3f}")

# %% [markdown]
# The gradient ranking works: with a third of the heads gone (24 of 72) the least important first keep the
# embeddings at cosine 0.95 to the unpruned ones and the margin at 0.50 (unpruned 0.54), where a random order
# falls to 0.79 and 0.42 and the most important first to 0.71 and 0.41. Retrieval itself stays perfect in every
# row — 24 paraphrase pairs on distinct topics are an easy test; the margin and the cosine show the damage first.
# The importance is largest in the last layers (layer 5's heads 5 and 10): the ones closest to the pooled
# embedding.

# %% [markdown]
# SmolLM2 has no classifier loss to differentiate here, so its heads are ranked by **ablation**: the change in
# the language-model loss on 64 tokens when each head is removed — shown for the first, a middle and the last
# layer:

# %%
from transformer_np.pretrained.llama import LlamaModel

short = ids[:64]
lm_loss = lambda p: float(quality.token_nll(LlamaModel(p, cfg, tokenizer=None), short).mean())  # noqa: E731
layers = [0, L // 2, L - 1]
ablation = prune.head_ablation_importance(lm_loss, model.params, [f"decoder/layers/{l}/attn/w_o" for l in layers],
                                          cfg.n_heads, cfg.d_head)
for l, row in zip(layers, ablation):
    print(f"layer {l:2d}: loss change per removed head " + " ".join(f"{v:+.3f}" for v in row))
print(f"the most important of these heads: layer {layers[ablation.argmax() // cfg.n_heads]}, "
      f"head {ablation.argmax() % cfg.n_heads}; removing it costs {ablation.max():.3f} nats per token")

# %% [markdown]
# ## The whole table
#
# `python -m transformer_np bench quality` runs every method on the whole evaluation text (23,248 predicted
# tokens), on MiniLM and on the three task models; the README lists its numbers (`docs/bench_quality.json`). Read
# aloud: 16-bit storage costs nothing (bfloat16 −0.01%), int8 weights per channel +0.10%, the int8 KV cache
# +0.10%; activations are what hurt — W8A8 +2.6%, cut to +1.0% by SmoothQuant's migration of the outliers of
# section 4 into the weights; 4 bits need groups (+96% per channel, +32% in groups of 32) and even so pay twice
# here, because these weights already *are* a 4-bit grid (the file's Q4_1), which the file's own blocks keep for
# free (96.6 MB, identical logits). Pruning is far harsher than quantization at the same saving: Wanda keeps
# half the weights at +91%, magnitude at ×25, and 2:4 only with Wanda's score (×5.5, against ×106).
#
# ![perplexity against bits](../figures/bench_quality_bits.png)
# ![perplexity against sparsity](../figures/bench_quality_sparsity.png)
# ![quantization error of every matrix](../figures/bench_quality_layers.png)

# %% [markdown]
# ## Exercises
#
# **1.** Write `my_absmax(w, bits)` returning `(q, s)`: symmetric quantization of a (C_in, C_out) matrix with one
# scale per output channel (column). The checker tries several shapes and bit widths.

# %%
from transformer_np.teaching import exercises

my_absmax = None  # replace with your function

# %%
exercises.check_absmax_quantize(my_absmax)

# %% [markdown]
# **2.** Write `my_pack(q)`: int8 values in [-8, 7] (an even number of them) → uint8 bytes, two values a byte,
# value 2i in the low nibble.

# %%
my_pack = None  # replace with your function

# %%
exercises.check_int4_pack(my_pack)

# %% [markdown]
# ## References
#
# - Dettmers et al. 2022, *LLM.int8(): 8-bit Matrix Multiplication for Transformers at Scale* (arXiv:2208.07339).
# - Xiao et al. 2023, *SmoothQuant* (arXiv:2211.10438).
# - Frantar & Alistarh 2023, *SparseGPT* (arXiv:2301.00774) and Sun et al. 2023, *A Simple and Effective Pruning
#   Approach for Large Language Models* (Wanda, arXiv:2306.11695).
# - Michel, Levy & Neubig 2019, *Are Sixteen Heads Really Better than One?* (arXiv:1905.10650).
# - Micikevicius et al. 2018, *Mixed Precision Training* (arXiv:1710.03740); Micikevicius et al. 2022, *FP8 Formats
#   for Deep Learning* (arXiv:2209.05433).
# - Mishra et al. 2021, *Accelerating Sparse Deep Neural Networks* (arXiv:2104.08378): 2:4 sparsity on tensor cores.
# - ggml's GGUF and block formats (Q4_1, Q8_0): `docs/gguf.md` and `ggml-quants.c` in the ggml repository.
