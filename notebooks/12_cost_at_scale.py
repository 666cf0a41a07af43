# %% [markdown]
# # 12. The cost of inference at scale
#
# Our [source document](../docs/source_model.md) asks how to scale Transformer inference efficiently — the question of Pope et al. (2022),
# *Efficiently Scaling Transformer Inference*. Their answer is arithmetic you can do on paper:
#
# - **FLOPs per token**: every weight takes part in one multiply-add per token, so a forward costs about
#   $2N$ FLOPs per token, plus attention's $4 \cdot L \cdot S \cdot H \cdot D$ for $S$ keys;
# - **bytes per step**: a decode step reads every weight once, and the whole KV cache
#   ($2 \cdot L \cdot H_{kv} \cdot D \cdot S \cdot B$ values);
# - **the roofline**: a step takes at least $\max(\text{FLOPs}/\text{peak},\ \text{bytes}/\text{bandwidth})$;
# - **partitioning**: on many chips, which array lives where decides how many bytes the chips exchange.
#
# Each quantity is one function of `transformer_np.efficient.cost_model`; the tests count every matrix product of
# a real forward (with torch's FLOP counter) and find the formula exact.

# %%
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from transformer_np import viz
from transformer_np.efficient import cost_model as cm
from transformer_np.efficient import simulated_partitioning as P
from transformer_np.pretrained.llama import LlamaConfig

smol = cm.ModelShape.from_config(LlamaConfig(), name="SmolLM2-135M")  # its shape; no weights needed here
N = cm.param_count(smol)
print(f"SmolLM2-135M: N = {N:,} parameters")
for S in (1, 256, 2048, 8192):
    attention = 4 * smol.n_layers * S * smol.n_heads * smol.d_head
    print(f"  one token with {S:5d} keys: {cm.flops_per_token(smol, S) / 1e6:7.1f} MFLOP, "
          f"of which attention 4·L·S·H·D = {attention / 1e6:6.1f} M")
print(f"KV cache: {cm.kv_cache_bytes(smol, 1, 1):,} bytes per token in float32 "
      f"({cm.kv_cache_bytes(smol, 1, 8192) / 2**20:.0f} MiB for its whole 8,192-token context)")

# %% [markdown]
# ## The roofline of this machine
#
# `python -m transformer_np bench cost` measures this machine's float32 matmul peak and copy bandwidth, then
# times SmolLM2's prefill and decode steps and compares them with the roofline. Its committed run
# (`docs/bench_cost.json`, on the project's 2-core machine) is drawn here; the probes below re-measure the
# machine you are on.

# %%
root = Path.cwd() if (Path.cwd() / "docs").exists() else Path.cwd().parent
run = json.loads((root / "docs/bench_cost.json").read_text())
hw = cm.Hardware(run["hardware"]["name"], run["hardware"]["peak_flops"], run["hardware"]["bandwidth"], 0.0,
                 dtype="float32")
print(f"committed run: {hw.peak_flops / 1e9:.0f} GFLOP/s, {hw.bandwidth / 1e9:.1f} GB/s "
      f"-> compute-bound above {hw.critical_intensity:.1f} FLOPs per byte")
print(f"this machine now: copy bandwidth {cm.measure_copy_bandwidth(64 * 2**20, 3) / 1e9:.1f} GB/s, "
      f"matmul peak {cm.measure_matmul_peak(1024, 3) / 1e9:.0f} GFLOP/s")
print(f"{'step':>14} {'size':>6} {'roofline ms':>11} {'measured ms':>11} {'ratio':>6}  bound")
for r in run["rows"]:
    print(f"{r['kind']:>14} {r['size']:>6} {1e3 * r['predicted_s']:11.1f} {1e3 * r['measured_s']:11.1f} "
          f"{r['ratio']:6.2f}  {r['bound']}")
viz.plots.roofline(hw, run["rows"]);

# %% [markdown]
# Read it left to right. A decode step at batch 1 does 2 FLOPs per weight it reads (4 bytes in float32): an
# intensity of 0.5, far left of the ridge — memory-bound; batching B sequences multiplies the FLOPs, not the
# weight bytes, so the points move right until the KV cache (which grows with B) takes over. Prefill of T tokens
# has an intensity of about T/2 and is compute-bound from T ≈ 20 on.
#
# **Where the measured points fall short of the line** (the ratios above): prefill runs at 53–66% of the matmul
# peak — the element-wise passes (softmax over H·T·T scores, SwiGLU, RMSNorm) each stream their arrays
# through memory single-threaded, and attention's matrix products are many small ones (D = 64). Decode at B = 1
# is 1.9× its bound: about 6 ms of each step is Python and NumPy dispatch (30 layers × ~20 calls; the same 30
# layers 36× narrower, C = 16, take 6.4 ms per step), and a matrix-vector product streams a large matrix at about the copy
# bandwidth while a (4 × C) @ (C × C') product of a small batch streams it 3× slower (measured: 30 vs 10 GB/s on
# an 8192² matrix): BLAS's kernels are tuned for large M, which is why B = 4…64 sit 3–5× above their bound.

# %% [markdown]
# ## Operator fusion: why element-wise work is slow in NumPy
#
# A matrix product does many FLOPs per byte; an element-wise operation does one or two per 8 bytes moved (read
# a float32, write one): far left on the roofline, its time is its bytes over the bandwidth. NumPy runs an
# expression as **one pass per operation**, each over a fresh array. picoGPT's GELU,
# $\tfrac12 x\,(1 + \tanh(\sqrt{2/\pi}\,(x + 0.044715\,x^3)))$, is nine passes; a *fused* kernel reads $x$ once
# and writes the result once. NumPy can come close: write the chain with `out=` and in-place operations and run
# it over pieces small enough to stay in the cache (`core.fast.map_chunks`), on a small thread pool — that is
# how `core.fast` computes our exact GELU and softmax. Measured on two sizes: 6 MiB (one GPT-2 FFN activation
# of 512 × 3072, which fits this machine's 32 MiB L3 cache) and 48 MiB (which does not):

# %%
import math

from transformer_np.core import fast

C_TANH = np.float32(math.sqrt(2 / math.pi))


def gelu_tanh_plain(x):
    return 0.5 * x * (1 + np.tanh(C_TANH * (x + np.float32(0.044715) * (x * x * x))))


def gelu_tanh_kernel(x, out):
    """The same operations, in place over one scratch array."""
    t = x * x
    t *= x
    t *= np.float32(0.044715)
    t += x
    t *= C_TANH
    np.tanh(t, out=t)
    t += np.float32(1.0)
    t *= x
    return np.multiply(t, np.float32(0.5), out=out)


def best(fn, repeat=5):
    return cm.best_time(fn, repeat)  # the package's one timer: a warm-up call, then the fastest of repeat


bw = cm.measure_copy_bandwidth(64 * 2**20, 3)
sizes, chunks = {}, []
for rows in (512, 4096):
    x_act = np.random.default_rng(0).standard_normal((rows, 3072), dtype=np.float32)
    label = f"{x_act.nbytes / 2**20:.0f} MiB"
    assert np.abs(fast.map_chunks(gelu_tanh_kernel, x_act) - gelu_tanh_plain(x_act)).max() < 1e-6
    sizes[label] = {"plain": best(lambda: gelu_tanh_plain(x_act)),
                    "in place, one piece": best(lambda: fast.map_chunks(gelu_tanh_kernel, x_act, chunk=x_act.size)),
                    "pieces, thread pool": best(lambda: fast.map_chunks(gelu_tanh_kernel, x_act)),
                    "bound": 2 * x_act.nbytes / bw}
flat, buf = x_act.reshape(-1), np.empty(x_act.size, np.float32)
for c in (1 << 12, 1 << 14, 1 << 16, 1 << 18, 1 << 20, 1 << 22):
    chunks.append((c, best(lambda: [gelu_tanh_kernel(flat[i:i + c], buf[i:i + c]) for i in range(0, flat.size, c)], 3),
                   best(lambda: fast.map_chunks(gelu_tanh_kernel, x_act, chunk=c), 3)))
print(f"copy bandwidth (64 MiB): {bw / 1e9:.1f} GB/s")
for label, t in sizes.items():
    print(f"{label}: " + ", ".join(f"{k} {1e3 * v:.2f} ms" for k, v in t.items()))
x_small = np.random.default_rng(0).standard_normal((512, 3072), dtype=np.float32)
print(f"x ** 3 (np.power) {1e3 * best(lambda: x_small ** 3, 3):.1f} ms against x * x * x "
      f"{1e3 * best(lambda: x_small * x_small * x_small, 3):.2f} ms on 6 MiB")
viz.plots.fusion(sizes, chunks);

# %% [markdown]
# What the numbers say (the committed outputs: 2-core machine; yours will differ):
#
# - **Fusion pays on both sizes, for different reasons.** On 48 MiB each of the plain expression's nine passes
#   goes to main memory; the kernel over cache-sized pieces reads and writes memory once, so most of the traffic
#   disappears. On 6 MiB the passes already run from the L3 cache, and what the pieces save is the trips to L3
#   and the allocation of eight temporaries.
# - **One piece in place is not enough**: the same in-place kernel on the whole array still streams each step
#   through memory (the scratch array is as big as the input). The piece size is the fusion: 64 Ki–1 Mi
#   elements (256 KiB–4 MiB) stay in the cache; below that, the Python call each NumPy operation costs per piece
#   dominates — the right panel's left side.
# - **Two threads help, by less than 2×**: NumPy's ufuncs release the GIL, so pieces run in parallel, but the
#   two cores share the memory bandwidth and the L3 cache — well under 2× on 48 MiB here (the right panel).
# - **The bound is not reached**: each NumPy operation is still a loop of its own over the piece, so a nine-step
#   chain reads its piece nine times from L1/L2. A compiled kernel (torch's, in C) keeps each value in a
#   register for all nine steps: torch's GELU on 6 MiB takes about 0.4 ms here.
# - **`x ** 3` is a trap**: np.power with a float32 array and exponent 3 calls `pow` per element — over 100×
#   slower than `x * x * x` here (NumPy special-cases only small powers like squares and square roots) —
#   and picoGPT's GELU writes `x**3`: that is much of why `bench forward`'s picoGPT-style peer is slow.

# %% [markdown]
# ### Two costs that are not arithmetic: tasks and memory
#
# The same softmax, the same bits, in two more settings where the time or the memory does not go to the math:
#
# - **Many small matrices.** A batch of 32 short sentences has 32 × 12 heads of about 40 × 40 scores, with a
#   padding mask. Handing the thread pool one matrix at a time makes 384 tasks of ten NumPy calls on 1,600
#   numbers each: the calls, not the numbers, take the time. `core.fast.nd_blocks` cuts the array into blocks of
#   about 256 Ki elements instead — many whole matrices to a block.
# - **One array fewer.** Attention's scores are a temporary of its own, so the softmax may write the weights over
#   them (`softmax(..., overwrite_x=True)`, SciPy's name for it) instead of into a second array of the same size —
#   9 × 2048 × 2048 float32 numbers, 151 MB, for SmolLM2's heads on a 2,048-token prompt.

# %%
import tracemalloc

from transformer_np.core.nn import softmax

rng = np.random.default_rng(0)
short = rng.standard_normal((32, 12, 40, 40), dtype=np.float32)
padding = rng.random((32, 1, 1, 40)) < 0.8
one_each = fast.softmax_masked(short, padding, chunk=40 * 40)  # one 40 x 40 matrix per task: 384 tasks
assert np.array_equal(one_each, fast.softmax_masked(short, padding))  # the same bits either way
per_matrix = best(lambda: fast.softmax_masked(short, padding, chunk=40 * 40))
in_blocks = best(lambda: fast.softmax_masked(short, padding))
print(f"32 x 12 matrices of 40 x 40, padding mask: one matrix per task (384 tasks) {1e3 * per_matrix:.2f} ms, "
      f"{len(fast.nd_blocks(short.shape))} blocks of whole matrices {1e3 * in_blocks:.2f} ms")

q = rng.standard_normal((1, 9, 2048, 64), dtype=np.float32)
k = rng.standard_normal((1, 3, 2048, 64), dtype=np.float32)
causal = np.tril(np.ones((2048, 2048), bool))


def scores():  # SmolLM2's 9 query heads over 3 key heads, each group's queries stacked in one product
    return (q.reshape(1, 3, 3 * 2048, 64) @ k.mT).reshape(1, 9, 2048, 2048)


def peak_mb(fn):
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 1e6


two = peak_mb(lambda: softmax(scores(), mask=causal))
one = peak_mb(lambda: softmax(scores(), mask=causal, overwrite_x=True))
assert np.array_equal(softmax(scores(), mask=causal), softmax(scores(), mask=causal, overwrite_x=True))
print(f"causal softmax of 9 x 2048 x 2048 scores: peak {two:.0f} MB into a new array, "
      f"{one:.0f} MB written over the scores")

# %% [markdown]
# The blocks matter for encoders of short texts: MiniLM's masked softmax took 12 ms a layer as 384 tasks and
# 1.7 ms in blocks, and `bench embed` went from 0.69× to 0.76–0.82× sentence-transformers' speed. Writing over
# the scores halves attention's peak memory; its time barely moved inside a whole prefill (about 1%), because
# NumPy's allocator was already reusing the freed memory there.

# %% [markdown]
# ## Pope et al.'s Table 1: how long a context fits?
#
# PaLM 540B on 64 TPU v4 chips (32 GiB each), 30% of the memory reserved for the KV cache. With **multiquery**
# attention there is one K/V head: sharded over heads like multi-head attention it must be *replicated* on every
# chip; sharded over the **batch**, each chip keeps only its own sequences' cache.

# %%
print(f"{'variant':>22} {'batch':>5} {'layout':>6} {'published':>9} {'ours':>7} {'diff':>6}")
for r in cm.pope_table1():
    print(f"{r['variant']:>22} {r['batch']:5d} {r['layout']:>6} {r['published']:9,} {r['ours']:7,} "
          f"{100 * r['difference']:+5.1f}%")
mh = cm.kv_cache_bytes(cm.PALM_540B_MULTIHEAD, 512, 2048, "bfloat16")
print(f"multi-head KV cache at batch 512 x 2,048 tokens: {mh / 1e12:.2f} TB, "
      f"{mh / cm.weight_bytes(cm.PALM_540B, 'bfloat16'):.1f}x the bfloat16 weights (paper: 3 TB, 3x)")

# %% [markdown]
# The multiquery rows follow from PaLM 540B's published shape (118 layers, one K/V head of D = 256, bfloat16).
# The multi-head row needs the comparison model's K/V width, which the table does not state: 48 heads of
# D = 128 (one head per chip once 48 are padded to 64, as the paper pads them) gives both this row and the
# paper's "3 TB" — our inference, stated as such.
#
# Their abstract's two headline numbers beside the model: the **29 ms per token** they measured for PaLM 540B with
# int8 weights on 64 chips, and multiquery's **32× longer context**.

# %%
for r in cm.pope_published():
    print(f"{r['quantity']:<45} published {r['published']:6.1f}   ours {r['ours']:6.1f}   ({r['note']})")

# %% [markdown]
# The lower bound is the int8 weights (540 GB) read once over 64 chips at 1.2 TB/s each: 7.0 ms. The measured
# 29 ms is 4.1× that floor; the floor leaves out everything but the weight reads — the collectives between 64
# chips in each of 118 layers at batch 1, where each one is latency- rather than bandwidth-bound, and every
# kernel that does not stream at full bandwidth.

# %% [markdown]
# ## Partitioning the feed-forward layer
#
# Three layouts of $y = \mathrm{act}(x W_{in}) W_{out}$ on $n$ chips, each run here on real arrays over simulated
# chips and checked equal to the unpartitioned layer. Which chip stores which block of $W_{in}$:

# %%
E, F, n = 8, 16, 4
one_d = np.repeat(np.arange(n), F // n)[None, :].repeat(E, 0)
two_d = (np.arange(E)[:, None] // (E // 2)) * 2 + np.arange(F)[None, :] // (F // 2)
viz.plots.layout_owners({"1D weight-stationary (F split 4 ways)": one_d,
                         "2D weight-stationary (X=2 by Y=2)": two_d,
                         "weight-gathered (stored 1D, gathered)": one_d});

# %%
rng = np.random.default_rng(0)
x, w_in, w_out = rng.standard_normal((32, 64)), rng.standard_normal((64, 256)) / 8, rng.standard_normal((256, 64)) / 16
ref = P.ffn_reference(x, w_in, w_out)
for name, go in [("1D", lambda m: np.concatenate(P.ffn_1d_weight_stationary(np.array_split(x, 4, 1), w_in, w_out, m), 1)),
                 ("2D", lambda m: np.concatenate(P.ffn_2d_weight_stationary(P.split_2d_input(x, 2, 2), w_in, w_out, m, 2), 1)),
                 ("weight-gathered", lambda m: np.concatenate(P.ffn_weight_gathered(np.array_split(x, 4, 0), w_in, w_out, m), 0))]:
    mesh = P.Mesh(4)
    y = go(mesh)
    print(f"{name:>16}: max |y - y_ref| = {np.abs(y - ref).max():.1e}; bytes sent per chip "
          f"{ {k: int(v) for k, v in mesh.sent.items() if v} }")

# %% [markdown]
# The formulas of those counts, applied to PaLM 540B's feed-forward layer (E = 18,432, F = 73,728, bfloat16,
# 270 GB/s per chip): 1D weight-stationary sends $2\frac{n-1}{n}NE$ values per chip (× their bytes) — it grows
# with the chip count towards $2NE$ and never falls; 2D falls as $1/\sqrt{n}$;
# weight-gathered sends the weights, independent of the N tokens — the layout for big prefill batches.

# %%
chips = [8, 16, 32, 64, 128, 256]
tpu = cm.HARDWARE["tpu-v4"]
times = {layout: {N: [P.ffn_comm_time(layout, N, 18432, 73728, c, tpu) for c in chips] for N in (512, 1 << 20)}
         for layout in ("1d", "2d", "gathered")}
viz.plots.layout_comm_times({"1D weight-stationary": times["1d"], "2D weight-stationary": times["2d"],
                             "weight-gathered": times["gathered"]}, chips,
                            "PaLM 540B feed-forward: communication per layer (formulas, TPU v4 interconnect)");

# %% [markdown]
# ## Tensor parallelism for real: MPI
#
# `efficient/tensor_parallel_mpi.py` splits a model Megatron-style over MPI ranks: each rank holds some attention heads (and
# their K/V cache) and some FFN columns, and two all-reduces per block add the partial results. The all-reduces
# live inside the weights (`x @ W_O` is the local product followed by `Allreduce`), so each rank runs the model's
# ordinary forward. Here: a random model with SmolLM2's 9 query / 3 K/V heads on 3 processes, checked against
# one process (`pip install mpi4py mpich` provides `mpiexec`; on SmolLM2 itself:
# `mpiexec -n 3 python -m transformer_np tp-generate --model smollm2 --prompt "…" --check`).

# %%
mpiexec = Path(sys.executable).with_name("mpiexec")
if mpiexec.exists():
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    done = subprocess.run([str(mpiexec), "-n", "3", sys.executable, "-m", "transformer_np", "tp-generate",
                           "--model", "tiny-llama", "--prompt", "5 6 7 8", "--max-new-tokens", "8", "--check"],
                          capture_output=True, text=True, timeout=120, env=env)
    print(done.stdout or done.stderr)
else:
    print("mpiexec not found: pip install mpi4py mpich")

# %% [markdown]
# ## What would change on an H200
#
# The same formulas with the H200's published figures (989 TFLOP/s bfloat16, 4.8 TB/s, 141 GiB — the datasheet's
# "141 GB" is what the chip reports as 141 GiB): its weights alone would keep SmolLM2's decode memory-bound up to
# batch ≈ 206, and with 2,048 tokens of context each sequence's KV cache keeps it memory-bound even at 512
# (below); a step at batch 1 and 2,048 tokens of context could take tens of microseconds instead of the tens of
# milliseconds measured here. A 70B Llama-shaped model (80 layers, C = 8,192, 64 query / 8 K/V heads,
# F = 28,672) has 141e9 bytes of bfloat16 weights — 131 GiB: one H200 holds them, with about 10 GiB left for the
# KV cache. `decode_cost` checks the capacity: a batch whose cache does not fit is costed on the chips it needs
# (`chips_needed`), each step's work shared perfectly between them.

# %%
h200 = cm.HARDWARE["h200"]
llama70 = cm.ModelShape("Llama-70B shape", 80, 8192, 64, 8, 128, 28672, 128256, tied_embeddings=False)
GiB = cm.GiB
for shape in (smol, llama70):
    w = cm.weight_bytes(shape, "bfloat16")
    print(f"{shape.name}: {w / GiB:6.1f} GiB of bfloat16 weights; critical batch {cm.critical_batch_size(h200, 'bfloat16'):.0f}")
    for B in (1, 64, 512):
        n = cm.chips_needed(shape, B, 2048, h200, "bfloat16", "bfloat16")
        f, b, t = cm.decode_cost(shape, B, 2048, h200, weights="bfloat16", kv="bfloat16", n_chips=n)
        print(f"  decode B={B:3d}, 2,048 tokens of context: KV cache {cm.kv_cache_bytes(shape, B, 2048, 'bfloat16') / GiB:6.2f} GiB "
              f"-> {n} chip{'s' * (n > 1)}: {1e3 * t:7.3f} ms per step ({cm.bound_by(f, b, h200)}-bound)")
assert cm.chips_needed(llama70, 1, 2048, h200, "bfloat16", "bfloat16") == 1  # what the text above says
try:
    cm.decode_cost(llama70, 64, 2048, h200, weights="bfloat16", kv="bfloat16")  # on one chip
except ValueError as e:
    print("one chip:", e)

# %% [markdown]
# ## Training compute, and over-training for inference
#
# A training step of a dense Transformer costs about $6N$ FLOPs per token — $2N$ forward, $4N$ backward — so
# training on $D$ tokens costs $C \approx 6ND$ (Kaplan et al. 2020). Hoffmann et al. (2022, "Chinchilla") found
# that for a fixed $C$ the lowest loss comes from $D \approx 20N$. SmolLM2-135M was trained on about 2 trillion
# tokens (its model card; Ben Allal et al. 2025 for the family) — far beyond that:

# %%
N = cm.param_count(smol)
D = 2e12
C = 6 * N * D
print(f"SmolLM2-135M: N = {N / 1e6:.1f} M parameters, D = 2e12 tokens: C = 6ND = {C:.2e} FLOPs")
print(f"compute-optimal D = 20N = {20 * N:.2e} tokens: trained {D / (20 * N):,.0f}x past it")
print(f"on one H200 at 40% of its bfloat16 peak: {C / (0.4 * h200.peak_flops) / 86400:.0f} days; serving costs "
      f"2N = {2 * N / 1e6:.0f} MFLOP a token, so {C / (2 * N):.1e} served tokens cost what training did")

# %% [markdown]
# Why train a small model so long? Because training is paid once and inference for every token ever served.
# Past the compute-optimal point, more tokens still lower a small model's loss, more slowly; a model 10× smaller
# trained 10× longer can match a larger one's quality at a tenth of the cost per served token — the trade
# Sardana & Frankle (2023) work out, and why the small models people run locally are all heavily over-trained.

# %% [markdown]
# ## Choosing d_model, heads and layers
#
# The source document's FAQ asks how to choose `d_model`, `nhead` and `num_layers`. Two kinds of numbers answer
# it: what each hyper-parameter **costs** — arithmetic, the same on every machine — and what it **buys** —
# measured by training. First the cost: SmolLM2-135M's shape with one hyper-parameter changed at a time,
# bfloat16 weights and cache, a 2,048-token context, on an H200 (`efficient.hyperparams.effects`).

# %%
from transformer_np.efficient import hyperparams as hp

print(f"{'variant':<16}{'C':>6}{'H':>4}{'H_kv':>5}{'D':>5}{'L':>4}{'F':>6}{'params M':>10}{'MFLOP/tok':>11}"
      f"{'KV KB/tok':>11}{'decode µs':>11}")
effect_rows = hp.effects(smol, cm.HARDWARE["h200"])
for r in effect_rows:
    print(f"{r['variant']:<16}{r['d_model']:>6}{r['n_heads']:>4}{r['n_kv_heads']:>5}{r['d_head']:>5}{r['n_layers']:>4}"
          f"{r['d_ff']:>6}{r['params'] / 1e6:>10.1f}{r['flops_per_token'] / 1e6:>11.0f}"
          f"{r['kv_bytes_per_token'] / 1e3:>11.1f}{r['decode_s'] * 1e6:>11.1f}")

# %% [markdown]
# Read it one knob at a time:
#
# - **d_model** is the expensive one: doubling C (heads kept, so D doubles too) takes the parameters from 134.5 M
#   to 322.1 M — every matrix grows with C, the embedding table too — and doubles the KV cache per token.
# - **n_heads** at a fixed C moves almost nothing: the products are the same size. With H_kv fixed, more heads
#   means a smaller D, so the K/V projections and the cache shrink (23.0 → 11.5 KB per token).
# - **n_kv_heads** is the KV cache's own knob: 9 → 3 → 1 K/V heads store 69.1 → 23.0 → 7.7 KB per token. At batch 1
#   the decode step barely notices (the weights dominate the bytes); at batch 128 and long contexts the cache is
#   what runs out — Pope's Table 1 above.
# - **n_layers** scales everything except the embedding, and latency with it: layers run one after another, so a
#   deeper model is slower per token even when it has no more FLOPs.
# - **d_ff** costs parameters, FLOPs and weight bytes, never cache.
#
# Now what they buy. `python -m transformer_np sweep` trained the `reverse` task's encoder-decoder here over
# d_model ∈ {32, 64, 128} × layers ∈ {1, 2} (each stack) × heads ∈ {1, 4}, plus a grouped-query row (H_kv = 1)
# and a wider FFN (F = 4C) of the (64, 2, 4) model, each for 1,000 steps with the task's batch and learning-rate
# schedule, then scored exact-match on the 1,000 held-out test strings. Two configurations were run again from
# seeds 1 and 2. The table ships with the package; this notebook reads it instead of retraining (a test re-runs
# its smallest row and finds the same numbers).

# %%
sweep = hp.load_sweep()
print(sweep["command"], "|", sweep["machine"])
print(f"{'seed':>4}{'C':>5}{'L':>3}{'H':>3}{'H_kv':>5}{'F':>5}{'params':>9}{'accuracy':>9}{'loss':>8}{'train s':>8}")
for r in sweep["rows"]:
    print(f"{r['seed']:>4}{r['d_model']:>5}{r['n_layers']:>3}{r['n_heads']:>3}{r['n_kv_heads']:>5}{r['d_ff']:>5}"
          f"{r['params']:>9,}{r['accuracy']:>9.3f}{r['final_loss']:>8.3f}{r['train_s']:>8.1f}")
viz.plots.sweep(sweep["rows"]);

# %% [markdown]
# What the sweep says, and what it cannot:
#
# - **The seed matters as much as most choices.** The (64, 2, 1) model scored 0.611, 0.968 and 0.873 from seeds
#   0, 1 and 2; (32, 1, 4) 0.957, 0.924, 0.929. A difference of a few points between two rows of one seed is
#   noise; only effects larger than that spread count.
# - **Whether more heads help is not settled by this sweep**: at seed 0, 4 heads beat 1 head in 5 of the 6 (C, L)
#   cells, by 6–27 points — but the one 1-head configuration run from three seeds spans 0.611–0.968, a spread as
#   large as those gaps, and the other cells were run once. It would take several seeds per cell to say.
# - **Bigger did not pay at a fixed budget**: the smallest model with 4 heads, (32, 1, 4) with 22,414
#   parameters, was the most accurate in 10.7 s; (128, 2, 4), 30× the parameters, trained 5× longer for less.
#   Part of that is the paper's schedule, whose learning rate scales as C^{-1/2}: wider models take smaller
#   steps and need more of them. The shipped `reverse` model, (64, 2, 4) trained 6,000 steps, reaches 0.998.
# - **Sharing K/V** (H_kv = 1) kept the accuracy (0.942 against 0.881 for the same model with 4 K/V heads — within
#   the seed spread) with 22% fewer parameters and a 4× smaller cache. **A wider FFN** (F = 4C) did not help here.
#
# ### A short guide
#
# 1. **Size from the budget, shape second.** Language-model loss depends mostly on the parameter count and the
#    training tokens, and only weakly on depth versus width over a wide range of shapes (Kaplan et al. 2020);
#    compute-optimal training uses about 20 tokens per parameter (Hoffmann et al. 2022, "Chinchilla"). For a
#    small task like ours, the smallest model that fits the data trains fastest to a given accuracy.
# 2. **Width versus depth: decide by latency.** At batch 1 each layer is a sequential step whose cost is its
#    weight bytes, and per-layer overheads add up (this machine's ~0.2 ms of dispatch per layer in `bench
#    cost`): fewer, wider layers decode faster for the same parameters. SmolLM2-135M (30 layers of 576) is deep
#    and narrow; the cost table shows what each direction costs.
# 3. **Heads: D = C/H between 64 and 128** (the 2017 base model: 512/8 = 64; BERT, GPT-2 and SmolLM2: 64;
#    Llama 2/3: 128), and more than one: in the paper's Table 3, a single head was 0.9 BLEU worse than the best
#    head count, and quality dropped again with too many heads — our sweep agrees on the first half.
# 4. **K/V heads for the cache**: grouped-query attention (Ainslie et al. 2023) with H/H_kv groups keeps quality
#    close to multi-head attention and divides the cache by H/H_kv; multiquery (Shazeer 2019) is H_kv = 1. Pick
#    H_kv from the context and batch you must serve (`cost_model.max_context`).
# 5. **d_ff = 4C** for a ReLU/GELU FFN (the paper); a SwiGLU FFN has three matrices, so F ≈ 8/3·C keeps the
#    parameter count (Shazeer 2020; SmolLM2: 1536/576 = 2.67).
# 6. **Re-tune the learning rate when C changes**, and compare configurations over several seeds.

# %% [markdown]
# ## Exercises
#
# **1.** Write `my_decode_time(n_params, bytes_per_weight, batch, peak_flops, bandwidth)`: the roofline time of
# one decode step counting the weights only.

# %%
from transformer_np.teaching import exercises

my_decode_time = None  # replace with your function

# %%
exercises.check_decode_time(my_decode_time)

# %% [markdown]
# **2.** Write `my_all_reduce_bytes(nbytes, n)`: how many bytes each of n chips sends in a ring all-reduce of an
# array of `nbytes` (a reduce-scatter, then an all-gather). The checker counts them on a simulated mesh.

# %%
my_all_reduce_bytes = None  # replace with your function

# %%
exercises.check_ring_all_reduce_bytes(my_all_reduce_bytes)

# %% [markdown]
# ## References
#
# - Kaplan et al. 2020, *Scaling Laws for Neural Language Models* (arXiv:2001.08361); Hoffmann et al. 2022,
#   *Training Compute-Optimal Large Language Models* (arXiv:2203.15556); Sardana & Frankle 2023, *Beyond
#   Chinchilla-Optimal* (arXiv:2401.00448); Ben Allal et al. 2025, *SmolLM2* (arXiv:2502.02737).
# - R. Pope et al., *Efficiently Scaling Transformer Inference*, MLSys 2023 (arXiv:2211.05102): §2 the cost
#   model, §3.2 feed-forward layouts, §3.3 multiquery attention sharded over batch, Table 1, §4 TPU v4 figures.
# - M. Shoeybi et al., *Megatron-LM*, 2019 (arXiv:1909.08053): the 1D tensor-parallel layout of `efficient/tensor_parallel_mpi.py`.
# - N. Shazeer, *Fast Transformer Decoding: One Write-Head is All You Need*, 2019 (arXiv:1911.02150): multiquery.
# - S. Williams, A. Waterman, D. Patterson, *Roofline: an insightful visual performance model*, CACM 2009.
# - J. Kaplan et al., *Scaling Laws for Neural Language Models*, 2020 (arXiv:2001.08361): loss against N, data
#   and compute; the weak dependence on shape. J. Hoffmann et al., *Training Compute-Optimal Large Language
#   Models*, 2022 (arXiv:2203.15556): about 20 tokens per parameter.
# - A. Vaswani et al., *Attention Is All You Need*, 2017, Table 3 (variations of heads, d_k, size and d_ff).
# - J. Ainslie et al., *GQA*, 2023 (arXiv:2305.13245); N. Shazeer, *GLU Variants Improve Transformer*, 2020
#   (arXiv:2002.05202).
# - A. Chowdhery et al., *PaLM*, 2022 (arXiv:2204.02311): PaLM 540B's shape. NVIDIA's A100, H100 and H200
#   datasheets for their figures (`cost_model.HARDWARE` states each source).
