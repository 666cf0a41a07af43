# %% [markdown]
# # 11. Making it smaller: quantization, mixed precision, pruning
#
# Our [source document](../docs/source_model.md) answers "how do we make Transformer inference faster?" with three things: faster
# hardware, **model compression** — quantization and pruning — and **mixed precision**. This chapter writes each
# technique as a formula, runs it on SmolLM2-135M-Instruct (chapter 9), and measures what it costs in quality
# and saves in bytes.
#
# Quality is measured two ways on a fixed text shipped with the package — docstrings of the Python standard
# library, 23,294 SmolLM2 tokens — with, disjoint from it, a calibration text for the methods that need to see
# activations. **Perplexity**, the exponential of the mean negative log-likelihood, and the **KL divergence** from
# the float32 model's next-token distribution, averaged over the tokens (llama.cpp's `--kl-divergence`):
#
# $$\mathrm{PPL} = \exp\Big(-\frac1N\sum_t \log q(x_{t+1}\mid x_{\le t})\Big),\qquad
#   \overline{\mathrm{KL}} = \frac1N\sum_t \sum_v p_t(v)\,\big(\log p_t(v) - \log q_t(v)\big)$$
#
# with $p$ the float32 model and $q$ the compressed one. Every number carries its **standard error** (s/√n over
# the tokens). Here we measure on the first 256 tokens to keep the notebook quick; `python -m transformer_np bench
# quality` measures every method on a longer run (its table is at the end).

# %%
import json
from pathlib import Path

import numpy as np

import transformer_np as tn
from transformer_np import viz
from transformer_np.core import ggml_formats, tiled
from transformer_np.core.masks import causal_mask
from transformer_np.efficient import awq, gptq
from transformer_np.efficient import compress as C
from transformer_np.efficient import precision, prune, quality
from transformer_np.efficient import quantize as Q
from transformer_np.pretrained import load_smollm2
from transformer_np.pretrained.llama import LlamaModel, llama_block

model = load_smollm2()
cfg = model.config
eval_ids = model.tokenize(quality.eval_text())
cal_ids = model.tokenize(quality.calibration_text())
ids = eval_ids[:256]
print(f"evaluation text: {len(eval_ids):,} tokens; calibration text: {len(cal_ids):,} tokens")
reference = quality.ReferenceLogits(model, ids)  # float32's logits on these tokens, computed once


def measure(method, **options):
    """SmolLM2 compressed by ``method`` against float32 on the first 256 evaluation tokens: perplexity and KL."""
    return quality.measure(model, method, ids, recorders, decode_tokens=0, reference=reference, **options)


def show(r):
    print(f"{C.method_label(r):34s} perplexity {r['perplexity']:7.3f} ± {r['perplexity_se']:.3f}   "
          f"KL {r['kl_mean']:.2e} ± {r['kl_mean_se']:.1e}   top-1 {r['top1']:.3f}")


recorders = None
base = measure("float32")
show(base)

# %% [markdown]
# ### Why the KL divergence, and why error bars
#
# Perplexity's standard error is large — on 256 tokens about a tenth of its value — because it measures how hard
# the *text* is: some tokens are easy to predict, some are not. A compressed model reads the same tokens, so
# that part is the same for both models; what compression changed is the *difference* per token. The KL divergence
# is such a per-token comparison, and better: it compares the whole distribution over 49,152 tokens, not only the
# probability of the one that came next, and it is never negative. int8 weights (per output channel) against
# float32, token by token:

# %%
small = model.with_params(C.compress(model.params, "int8"))
scores = quality.token_scores(small, ids, reference=reference)
int8 = quality.summarize(scores)
print(f"perplexity  float32 {base['perplexity']:.3f} ± {base['perplexity_se']:.3f}   "
      f"int8 {int8['perplexity']:.3f} ± {int8['perplexity_se']:.3f}")
diff, diff_se = quality.mean_and_se(scores["nll"] - scores["ref_nll"])
print(f"mean difference of −log p per token: {diff:+.5f} ± {diff_se:.5f} nats")
print(f"KL divergence: {int8['kl_mean']:.5f} ± {int8['kl_mean_se']:.5f} nats per token "
      f"({int8['kl_mean'] / int8['kl_mean_se']:.0f} standard errors from zero)")
assert int8["perplexity_se"] > 10 * abs(int8["perplexity"] - base["perplexity"])  # the two perplexities: noise
assert int8["kl_mean"] > 5 * int8["kl_mean_se"]  # the KL divergence: a clear signal on the same tokens
viz.paired_token_scores(scores, "int8");

# %% [markdown]
# The perplexities differ by far less than one standard error — by perplexity alone int8 and float32 cannot be
# told apart on this text — while the KL divergence is many standard errors from zero. So in this chapter (and in
# `bench quality`) methods are **ranked only where their KL divergences differ by more than two standard errors**;
# the perplexity is given beside it, with its error, for comparison with papers.

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
# ### GGUF's formats, and a lesson about grids
#
# A GGUF file stores each tensor in one of ggml's **block formats**: 32 weights share a float16 scale $d$ (and in
# the "_1" formats a float16 minimum $m$). `core.ggml_formats` draws each one and quantizes and dequantizes it bit
# for bit as the `gguf` package does:
#
# | format | a value | bytes per 32 | bits a weight |
# |---|---|---|---|
# | Q8_0 | $d\,q$, $q$ int8 | 34 | 8.5 |
# | Q5_1 / Q5_0 | $d\,q + m$ / $d\,(q-16)$, $q$ 5-bit | 24 / 22 | 6.0 / 5.5 |
# | Q4_1 / Q4_0 | $d\,q + m$ / $d\,(q-8)$, $q$ 4-bit | 20 / 18 | 5.0 / 4.5 |
#
# SmolLM2's float32 weights *are* its file's Q4_1 blocks, widened. Re-quantizing them to Q4_1 finds exactly the
# same grid — no error at all — while another 4-bit grid (Q4_0, or this package's symmetric int4 in groups)
# must move every weight off the grid it lies on:

# %%
for method in ("q4_1", "q4_0"):  # (the package's own int4 grid: the table at the end)
    show(measure(method))
raw = ggml_formats.quantize(w.T, "Q4_1")  # layer 5's w_down as a file holds it: the rows of Wᵀ, in blocks
assert np.array_equal(ggml_formats.dequantize(raw, "Q4_1").reshape(w.T.shape), w.T)  # bit for bit: on this grid

# %% [markdown]
# So **on this model a 4-bit row measures the mismatch between two grids as much as 4-bit quantization itself**:
# re-quantizing a quantized model favours the grid it came from. Every 4-bit row of `bench quality`'s table says
# what it measures; the clean 4-bit subjects are models whose weights are float32 from training — MiniLM (from
# its safetensors file) and the task models of chapter 8.
#
# ### K-quants: super-blocks with quantized scales
#
# The files people download mostly use the **K-quants** ("Q4_K_M" and the like): 256 weights form a *super-block*
# with one float16 $d$ and $d_{min}$, and each sub-block of 32 keeps a 6-bit integer scale $s_j$ and minimum $m_j$
# — the scales are themselves quantized, so they cost 0.375 bits a weight instead of Q4_1's 1:
#
# $$x = d\,s_j\,q - d_{min}\,m_j,\qquad q \in \{0,\dots,15\},\ s_j, m_j \in \{0,\dots,63\}$$
#
# Gemma 3 270M's file (chapter 9) is such a mix. Its types, and one of its Q4_K super-blocks drawn:

# %%
from collections import Counter

from transformer_np.pretrained.gemma3 import gemma3_path
from transformer_np.pretrained.gguf import read_gguf

gemma_file = read_gguf(gemma3_path())
types = Counter(t.type for t in gemma_file.tensors.values())
for name, n in types.most_common():
    bits = ggml_formats.bits_per_weight(name) if name in ggml_formats.QUANT_SIZES else 32
    print(f"{name:5s} {n:3d} tensors   {bits:6.4g} bits a weight")
block = gemma_file.raw("blk.0.attn_output.weight")[:144]  # the first super-block of a Q4_K matrix
fields = ggml_formats.q4_k_fields(block)
values = ggml_formats.dequantize_q4_k(block)
d, dmin = fields["d"][0, 0], fields["dmin"][0, 0]
rebuilt = (d * fields["scales"][0][:, None] * fields["q"][0] - dmin * fields["mins"][0][:, None]).reshape(-1)
assert np.array_equal(rebuilt, values)  # the formula above, on the real bytes
viz.q4_k_superblock(fields, "Gemma 3's blk.0.attn_output.weight, super-block 0");

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
llm_run = json.loads((root / "docs/bench_llm.json").read_text())
print(f"copy bandwidth {llm_run['copy_bandwidth_gb_s']:.1f} GB/s;  decode of {llm_run['decode'][-1]['new_tokens']} tokens")
print(f"{'weights':14s} {'MB':>5s} {'roofline tok/s':>14s} {'measured':>9s} {'of roofline':>11s} {'vs float32':>10s}")
for r in llm_run["formats"]:
    print(f"{r['weights']:14s} {r['weight_bytes'] / 1e6:5.0f} {r['roofline_tokens_per_s']:14.1f} "
          f"{r['tokens_per_s_long']:9.1f} {r['fraction_of_roofline']:11.0%} {r['speedup']:9.2f}x")
assert max(r["speedup"] for r in llm_run["formats"][1:]) < 1.1  # what the text below says of this run
if llm_run.get("llama_cpp"):
    a = llm_run["llama_cpp"]
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
show(measure("float8_e4m3fn"))  # (bfloat16 and float16: the table at the end)

# %% [markdown]
# The products still accumulate in float32; some operations must stay float32 altogether. Each breaks in a
# low precision, on numbers this model produces:
#
# * **norm statistics**: RMSNorm's $\sum_c x_c^2$ over C = 576 channels overflows float16 (largest 65,504) once
#   the values average about $\sqrt{65504/576} \approx 10.7$ — and SmolLM2's residual stream, what its norms read,
#   is measured below;
# * **softmax and log-softmax of the logits**: over V = 49,152 tokens, float16's 11-bit mantissa rounds the sum of
#   the exponentials, and the log-probabilities that the loss and sampling read are off by the amount printed
#   below;
# * **casts past a format's range**: what happens depends on the *cast*, not only the format. float8_e4m3fn has no
#   infinity; ml_dtypes' cast (NumPy's, used here) turns 500 into NaN, a *saturating* cast (torch's, and the FP8
#   matrix-product libraries') clips it to 448 — wrong, but finite. FP8 recipes avoid both by **scaling each
#   tensor** first, $s = \max|x| / 448$, storing $x/s$ (Micikevicius et al. 2022).

# %%
x = np.full((1, 576), 11.0, np.float32)
print("sum of squares of 576 values of 11:  float32", precision.sum_of_squares(x, np.float32)[0],
      "  float16", precision.sum_of_squares(x, np.float16)[0])


def residual_stream(params, text_ids, n_layers):
    """The residual stream (1, T, C) after each of the first n_layers blocks, one block at a time."""
    x, T = params["embed"]["table"][np.asarray(text_ids)[None]], len(text_ids)
    for layer in range(n_layers):
        x = llama_block(x, params["decoder"]["layers"][layer], cfg, causal_mask(T), np.arange(T))[0]
        yield x


overflow = []  # per block: the tokens of 64 whose sum of squares overflows float16
for h in residual_stream(model.params, ids[:64], cfg.n_layers):
    overflow.append(int(np.isinf(precision.sum_of_squares(h[0], np.float16)).sum()))
print(f"the residual stream after the last block: max |x| {np.abs(h).max():.0f}; tokens whose sum of squares "
      f"overflows float16, block by block: {overflow}")
logits = model.logits(ids[:8])
ref = precision.log_softmax_in(logits, np.float64)
for dtype in (np.float32, np.float16):
    print(f"log-softmax computed in {np.dtype(dtype).name}: max error {np.abs(precision.log_softmax_in(logits, dtype) - ref).max():.1e}")
big = np.float32([500.0, 3.0, 0.01])
print("[500, 3, 0.01] as float8_e4m3fn — ml_dtypes' cast:", precision.round_trip(big, "float8_e4m3fn"),
      " saturating:", precision.round_trip(precision.saturate(big, "float8_e4m3fn"), "float8_e4m3fn"),
      " scaled per tensor:", precision.scaled_round_trip(big, "float8_e4m3fn")[0])

# %% [markdown]
# ## 4. Activations and their outliers
#
# Quantizing the *activations* too (W8A8) lets the products run on integer units — but activations are much
# harder than weights. `record_activations` runs the calibration text through the model and keeps, for every
# input channel $j$ of every matrix, $\max|X_j|$ (and $\sum X_j^2$, for Wanda below):

# %%
recorders = quality.record_activations(model, cal_ids[:512])
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
#   $s_j = \max|X_j|^{\alpha} / \max|W_j|^{1-\alpha}$, dividing input channel $j$ by $s_j$ and multiplying row $j$
#   of the matrix by $s_j$ — the same function, smoother activations. The division has to be folded into whatever
#   produces the input: for Q, K, V and gate, up it is the norm's $\gamma_j$; for the down projection — whose input
#   holds the outliers above — it is column $j$ of $W_{up}$, because SwiGLU's $h = \mathrm{silu}(xW_{gate}) \odot
#   (xW_{up})$ is linear in $W_{up}$. (Attention's output projection $W_O$ is not smoothed here: its input mixes the
#   value heads that grouped-query attention shares between query heads.)
# * **LLM.int8()** (Dettmers et al. 2022): the input columns with any $|x| \ge 6$ go through a float product. One
#   difference from the paper: the weight rows those columns meet are the int8 rows dequantized, where the paper
#   keeps $W$ in fp16 — so here only the activations' outliers escape rounding.

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
s_down = Q.smoothing_factors(channel, np.abs(w_q).max(axis=1))  # layer {worst}'s w_down: its input ÷ s
smoothed = channel / s_down
print(f"layer {worst}'s down-projection input: largest channel / median {channel.max() / np.median(channel):.0f}x "
      f"before smoothing, {smoothed.max() / np.median(smoothed):.1f}x after")
for method in ("w8a8", "smoothquant"):  # (LLM.int8() and kv-int8: the table at the end)
    show(measure(method))

# %% [markdown]
# `kv-int8` (its row in the table at the end) leaves the weights alone and stores the KV cache as int8 with one scale per token and head: a
# quarter of the cache's bytes (plus 4/D for the scales) for almost no loss — the cache, not the weights, is
# what grows with long contexts (chapter 10).

# %% [markdown]
# ## 5. Rounding that looks at the data: GPTQ and AWQ
#
# Round-to-nearest (RTN) rounds every weight on its own. What matters is the layer's *output* on real inputs,
# $\|XW - X\hat W\|^2$ over calibration rows $X$ — and two methods made 4-bit LLMs practical by aiming at it.
#
# **GPTQ** (Frantar et al. 2022) rounds the input rows of $W$ one at a time and moves the rows not yet rounded to
# absorb each rounding error. With $H = X^\top X$ the output error of a change $\delta$ is
# $\mathrm{tr}(\delta^\top H \delta)$, and the best correction after rounding row $i$ (error $e_i = w_i - q_i$) is the
# Optimal Brain Surgeon update
#
# $$w_{i+1:} \leftarrow w_{i+1:} - \frac{e_i}{[H^{-1}]_{ii}}\,[H^{-1}]_{i,\,i+1:}$$
#
# read from the Cholesky factor of $H^{-1}$, so $H$ is inverted once (`efficient.gptq`; a loop-level version is its
# test's reference, and with $H = I$ it is RTN bit for bit). On layer 5's gate projection, int4 in groups of 64
# (SmolLM2's C = 576 is not a multiple of 128), $H$ from 1,024 calibration tokens, and the error measured on those
# and on 512 held-out tokens of the evaluation text:

# %%
path = "decoder/layers/5/ffn/w_gate"
w_g, w_up = (model.params["decoder"]["layers"][5]["ffn"][k] for k in ("w_gate", "w_up"))  # (576, 1536) each


def record_layer5(rec, text_ids, window=512):
    """Run blocks 0-5 over text_ids, window by window, with w_gate of layer 5 replaced by the recorder ``rec``:
    its inputs are all that is needed, so the other 24 blocks and the output layer never run."""
    params = tn.core.tree.map_weights(model.params, lambda p, w: rec if p == path else w)
    for start in range(0, len(text_ids), window):
        for _ in residual_stream(params, text_ids[start:start + window], 6):  # section 3's blocks, six of them
            pass


cal = quality.ActivationRecorder(w_g, path, hessian=True, keep_rows=1024)  # 4,096 tokens; the first 1,024 kept
held = quality.ActivationRecorder(w_g, path, hessian=True)
record_layer5(cal, cal_ids[:4096])
record_layer5(held, eval_ids[256:1280])
hessian = {1024: cal.sample.astype(np.float64).T @ cal.sample, 4096: cal.xtx}  # H = XᵀX of the first n tokens
relative = lambda d, h: gptq.output_error(w_g, d, h).sum() / gptq.output_error(w_g, 0 * w_g, h).sum()  # noqa: E731
rtn_w = Q.WeightOnlyMatrix(w_g, 4, axis=0, group_size=64).dequantize()
gptq_w = {n: gptq.gptq_matrix(w_g, h, 4, 64).dequantize() for n, h in hessian.items()}
print(f"relative output error ‖X δ‖² / ‖X W‖² on 1,024 held-out tokens: RTN {relative(rtn_w, held.xtx):.2e}")
for n, d in gptq_w.items():
    print(f"GPTQ, H from {n:,} calibration tokens: {relative(d, hessian[n]):.2e} on them, "
          f"{relative(d, held.xtx):.2e} held out   (RMS weight error {np.sqrt(np.mean((d - w_g) ** 2)):.2e}, "
          f"RTN's {np.sqrt(np.mean((rtn_w - w_g) ** 2)):.2e})")
assert relative(gptq_w[4096], held.xtx) < relative(rtn_w, held.xtx)
viz.gptq_vs_rtn(w_g, {"RTN": rtn_w, "GPTQ": gptq_w[4096]}, held.xtx,
                "Layer 5's w_gate, int4 in groups of 64; GPTQ's H from 4,096 tokens, errors on 1,024 others");

# %% [markdown]
# GPTQ's weights are *further* from the originals than RTN's — it trades weight error for output error, moving
# each row to cancel what the rows before it got wrong in the directions the inputs actually use. And it fits
# the calibration inputs: from 1,024 tokens its $H$ (576 × 576, estimated from as few rows) describes those tokens
# better than text in general, and the held-out error shows it; from 4,096 it carries over. (The paper
# calibrates on 128 sequences of 2,048 tokens.)
#
# **AWQ** (Lin et al. 2023) keeps RTN but changes what is rounded: the few input channels that meet large
# activations matter most, so their weights are scaled up before rounding (rounded relatively finer) and the
# inputs scaled down by as much — $xW = (x \oslash s)(\mathrm{diag}(s)W)$, the same function. The scales are
# $s_j = \overline{|X_j|}^{\alpha}$ with $\alpha$ searched on the calibration rows; $\alpha = 0$ is RTN, so on those
# rows AWQ never loses. Where a norm feeds the linears, $\oslash s$ is folded into its $\gamma$, as SmoothQuant's.
# The FFN norm's group, gate and up, of layer 5:

# %%
s_awq, alpha, errors = awq.search_scale(cal.sample[:512], cal.absmean, [w_g, w_up], bits=4, group_size=64)
print(f"best α = {alpha:.2f}: output error {errors[alpha] / errors[0]:.2f}x RTN's on the calibration rows; "
      f"the scales run from {s_awq.min():.2f} to {s_awq.max():.2f}")
viz.awq_search(cal.absmean, s_awq, errors, "Layer 5's gate and up projections, int4 in groups of 64");

# %% [markdown]
# On the whole model — `bench quality`, every matrix compressed, the KL divergence on the evaluation text — the
# committed run reads (RTN is `int4`/`int3` in the same groups, on the same symmetric grid):

# %%
run = json.loads((root / "docs/bench_quality.json").read_text())
rows = {C.method_label(r): r for r in run["smollm2"]}
print(f"SmolLM2, {run['smollm2'][0]['tokens']:,} evaluation tokens:")
for bits in (4, 3):
    for g in (64, 32):
        rtn = rows[f"int{bits} (group_size={g})"]
        for m in ("gptq", "awq"):
            r = rows[f"{m} (bits={bits}, group_size={g})"]
            z = quality.standard_errors_apart(r, rtn)
            print(f"  {m:4s} int{bits} g{g}: KL {r['kl_mean']:.4f} ± {r['kl_mean_se']:.4f}  against RTN's "
                  f"{rtn['kl_mean']:.4f} ± {rtn['kl_mean_se']:.4f}  ({z:+.0f} standard errors: "
                  f"{'lower' if z < -2 else 'higher' if z > 2 else 'not distinguishable'})")
print("MiniLM, the shipped search sentences (mean cosine to float32's embeddings):")
mini = {C.method_label(r): r for r in run["minilm"]}
for bits in (4, 3):
    rtn = mini[f"int{bits} (group_size=128)"]
    for m in ("gptq", "awq"):
        r = mini[f"{m} (bits={bits}, group_size=128)"]
        print(f"  {m:4s} int{bits} g128: {r['cosine_mean']:.4f} ± {r['cosine_mean_se']:.4f}  against RTN's "
              f"{rtn['cosine_mean']:.4f} ± {rtn['cosine_mean_se']:.4f}")

# %% [markdown]
# ## 6. Pruning
#
# Zero out weights, keep the shapes. **Magnitude** pruning drops the smallest $|W_{ij}|$; **Wanda** (Sun et al.
# 2023) scores $|W_{ij}|\cdot\|X_i\|_2$ — a small weight on a loud input matters — and compares the scores within
# each output; **2:4** keeps 2 of every 4 consecutive inputs of an output, the pattern NVIDIA's sparse tensor
# cores run at up to twice the matrix product's math throughput (on hardware that supports it; less end to end,
# and nothing here, where a zero costs what any number costs). The masks on one matrix:

# %%
norms = np.sqrt(recorders["decoder/layers/5/ffn/w_down"].sumsq)
viz.mask_patterns({"magnitude 50%": prune.magnitude_mask(w, 0.5), "Wanda 50%": prune.wanda_mask(w, norms, 0.5),
                   "2:4": prune.n_m_mask(w, 2, 4)});

# %%
for method, options in (("magnitude", {"sparsity": 0.5}), ("wanda", {"sparsity": 0.5})):  # 2:4: the table
    show(measure(method, **options))

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
for n in range(0, importance.size + 1, 4):
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
for n in (24, 48):
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
# the language-model loss on 32 tokens when each head is removed — shown for the first, a middle and the last
# layer:

# %%

short = ids[:32]
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
# `python -m transformer_np bench quality` runs every method on SmolLM2 (below), on MiniLM and on the three task
# models; the README shows its main rows. Each 4-bit row says what it measures, and two rows are ranked only where
# their KL divergences differ by more than two standard errors:

# %%
print(f"{'method':36s} {'bits':>5s} {'KL from float32':>19s} {'perplexity':>16s}  what a 4-bit row measures")
for r in run["smollm2"]:
    print(f"{C.method_label(r):36s} {r['bits_per_weight']:5.2f} {r['kl_mean']:9.5f} ± {r['kl_mean_se']:.5f} "
          f"{r['perplexity']:8.3f} ± {r['perplexity_se']:.3f}  {r.get('measures', '')}")
int4_rows = [r for r in run["smollm2"] if r["method"] in ("int4", "q4_0", "gptq", "awq") and r.get("bits", 4) == 4]
apart = min(quality.standard_errors_apart(r, rows["int8"]) for r in int4_rows)
print(f"int8 per channel against the closest 4-bit row: {apart:.0f} standard errors apart")
# the grid lesson: re-quantized to Q4_1, the model is its own file to the last digit (both at float32 rounding of
# the tile product's summation order, ~1e-11 nats, against a dense float32 product)
assert rows["q4_1"]["kl_mean"] == rows["gguf"]["kl_mean"] < 1e-9
assert apart > 2  # int8 is below every 4-bit row by more than two standard errors
for bits, g in ((4, 64), (4, 32), (3, 64), (3, 32)):
    rtn = rows[f"int{bits} (group_size={g})"]
    print(f"int{bits} g{g}: GPTQ against RTN {quality.standard_errors_apart(rows[f'gptq (bits={bits}, group_size={g})'], rtn):+.0f}"
          f" standard errors, AWQ against RTN {quality.standard_errors_apart(rows[f'awq (bits={bits}, group_size={g})'], rtn):+.0f}")
assert quality.standard_errors_apart(rows["gptq (bits=4, group_size=64)"], rows["int4 (group_size=64)"]) < -2
assert quality.standard_errors_apart(rows["gptq (bits=3, group_size=64)"], rows["int3 (group_size=64)"]) > 2

# %% [markdown]
# Read aloud, ranking only what the standard errors allow:
#
# * **16-bit storage costs nothing measurable in perplexity**, and the KL divergence still orders it: float16
#   (10 mantissa bits) is forty times closer to float32 than bfloat16 (7).
# * **int8 and Q8_0 are inside perplexity's noise** (within 0.02 of float32's ± 0.37) but their KLs differ by
#   dozens of standard errors: blocks of 32 with a float16 scale (Q8_0, 8.5 bits) are closer than one scale per
#   output channel (8.05 bits).
# * **The grid lesson**: Q4_1 gives the file back; every other 4-bit row pays for leaving its grid — Q4_0 less
#   than symmetric int4 in groups of 32 or 64, an asymmetric grid (with a minimum, like Q4_1) less than a
#   symmetric one.
# * **GPTQ and AWQ beat round-to-nearest at 4 bits** on the same grid, AWQ by more; **at 3 bits GPTQ is worse
#   than RTN** (both have broken the model, KL near 2–3 nats): with $H$ from 2,048 calibration tokens against
#   inputs of up to 1,536 channels it fits the calibration text — section 5's held-out measurement on one
#   matrix — while AWQ, which only rescales, still helps.
# * **Activations are what hurt 8-bit**: W8A8's KL is ten times int8 weight-only's; SmoothQuant, now smoothing the
#   down projection's input too, cuts it by almost two thirds, LLM.int8() by less; the int8 KV cache costs less
#   than any int8 weight format.
# * **Pruning is far harsher than quantization at the same saving**, and the activation-aware score is what makes
#   it usable: Wanda at 50% against magnitude at 50%, Wanda's 2:4 against plain 2:4.
#
# On MiniLM (float32 weights from training: no grid to lose) GPTQ and AWQ both raise the embeddings' mean cosine
# to float32's at 4 bits; at 3 bits only AWQ does, beyond the standard errors (section 5's printout).
#
# ![KL divergence against bits](../figures/bench_quality_kl.png)
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
# - Frantar, Ashkboos, Hoefler & Alistarh 2022, *GPTQ: Accurate Post-Training Quantization for Generative
  Pre-trained Transformers* (arXiv:2210.17323).
- Lin et al. 2023, *AWQ: Activation-aware Weight Quantization for LLM Compression and Acceleration*
  (arXiv:2306.00978).
- ggml's GGUF and block formats (Q4_1, Q8_0, the K-quants): `docs/gguf.md` and `ggml-quants.c` in the ggml
  repository; llama.cpp's `perplexity --kl-divergence` for the KL measure.
