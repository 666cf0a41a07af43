r"""The cost of inference as arithmetic (Pope et al. 2022, "Efficiently Scaling Transformer Inference", §2–3).

Every quantity is one function with its formula; the shape of the model is a :class:`ModelShape`, the machine a
:class:`Hardware`.  Shape vocabulary: B batch · T new tokens per step · P tokens already cached · S = P + T keys ·
C = d_model · H query heads · H_kv key/value heads · D = d_head · F = d_ff · V vocabulary · L layers.

    FLOPs of one forward   2 · (weights' multiply-adds per token) · B·T  +  4 · L · H · D · B · T · S
    bytes of one step      weights (every one read once)  +  KV cache read (2 · L · H_kv · D · B · S · bytes)
    roofline time          max(FLOPs / peak, bytes / bandwidth)
    critical batch         B* = peak / bandwidth · bytes_per_weight / 2      (decode turns compute-bound at B*)

The FLOPs are those this package's forward actually runs (a causal mask does not skip the masked scores, so
attention costs the full T × S product): ``tests/test_cost_model.py`` counts every matrix product of a forward
and finds the formula exact.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import time

import numpy as np

from ..core.backend import BACKENDS, array_namespace, to_backend
from ..core.checks import check_choice, check_positive_int, check_real
from ..decoding.cache import kv_cache_bytes as cache_bytes

GiB = 2**30
BYTES = {"float64": 8, "float32": 4, "bfloat16": 2, "float16": 2, "int8": 1, "float8": 1, "int4": 0.5}


# --- the machine ----------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Hardware:
    name: str
    peak_flops: float  # FLOP/s of a large matrix product at the compute dtype below
    bandwidth: float  # bytes/s between memory and the compute units
    memory: float  # bytes of memory per chip
    interconnect: float = 0.0  # bytes/s a chip can send to the others (0: a single chip)
    dtype: str = "bfloat16"  # the dtype peak_flops is for
    source: str = ""  # where the figures come from

    @property
    def critical_intensity(self):
        """peak / bandwidth, in FLOPs per byte: a step with more FLOPs per byte moved is bound by compute."""
        return self.peak_flops / self.bandwidth


# published figures (dense, no sparsity); the GPUs' SXM versions
HARDWARE = {
    "tpu-v4": Hardware("TPU v4", 275e12, 1.2e12, 32 * GiB, 270e9, "bfloat16",
                       "Pope et al. 2022 §4 (275 TFLOP/s bfloat16, 32 GiB HBM at 1,200 GB/s, 270 GB/s interconnect)"),
    # the GPUs' memory in GiB: "80 GB" and "141 GB" on the datasheets are the 80 and 141 GiB nvidia-smi shows
    "a100": Hardware("A100 SXM 80GB", 312e12, 2.039e12, 80 * GiB, 600e9, "bfloat16",
                     "NVIDIA A100 datasheet (312 TFLOP/s bf16 dense, 2,039 GB/s HBM2e, NVLink 600 GB/s)"),
    "h100": Hardware("H100 SXM", 989e12, 3.35e12, 80 * GiB, 900e9, "bfloat16",
                     "NVIDIA H100 datasheet (989 TFLOP/s bf16 dense, 3.35 TB/s HBM3, NVLink 900 GB/s)"),
    "h200": Hardware("H200 SXM", 989e12, 4.8e12, 141 * GiB, 900e9, "bfloat16",
                     "NVIDIA H200 datasheet (989 TFLOP/s bf16 dense, 141 GB HBM3e at 4.8 TB/s, NVLink 900 GB/s)"),
    "h200-fp32": Hardware("H200 SXM, float32", 67e12, 4.8e12, 141 * GiB, 900e9, "float32",
                          "NVIDIA H200 datasheet (67 TFLOP/s float32 without tensor cores)"),
}


# dense float32 datasheet peaks of GPUs this project may be lent (NVIDIA's H100/H200 SXM figures), TFLOP/s, for
# a device_name(): with and without TF32 tensor cores
GPU_DATASHEET_TFLOPS = {"H200": {"float32": 66.9, "TF32": 494.7}, "H100 80GB HBM3": {"float32": 66.9, "TF32": 494.7}}


def synchronize(backend):
    """Wait for ``backend``'s device to finish what it was given (CuPy runs asynchronously; NumPy and torch on the
    CPU have finished when a call returns), so that a timing covers the work."""
    if backend == "cupy":
        import cupy

        cupy.cuda.get_current_stream().synchronize()


def best_time(fn, repeat, backend="numpy"):
    """The fastest of ``repeat`` timed calls of fn, after one warm-up call (first-call costs left out); on a GPU
    backend each call is followed by a wait for the device."""
    def call():
        fn()
        synchronize(backend)

    call()  # warm-up
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - t0)
    return best


def measure_matmul_peak(n=2048, repeat=5, backend="numpy"):
    """Achieved float32 FLOP/s of one n × n matrix product on ``backend`` (best of ``repeat``): the compute
    ceiling code on that library can reach (CuPy: TF32 when CUPY_TF32=1)."""
    rng = np.random.default_rng(0)
    a, b = (to_backend(rng.standard_normal((n, n), dtype=np.float32), backend) for _ in range(2))
    return 2 * n**3 / best_time(lambda: a @ b, repeat, backend)


def measure_copy_bandwidth(nbytes=256 * 2**20, repeat=5, backend="numpy"):
    """Achieved bytes/s of copying a float32 array of ``nbytes`` into another on ``backend``'s device (read +
    write: 2·nbytes moved; best of ``repeat``): the memory bandwidth an element-wise pass sees."""
    src, dst = (to_backend(np.ones(nbytes // 4, dtype=np.float32), backend) for _ in range(2))
    if backend == "torch":
        copy = functools.partial(dst.copy_, src)  # into an allocated array, as np.copyto
    else:
        copy = functools.partial(array_namespace(src).copyto, dst, src)  # NumPy and CuPy
    return 2 * nbytes / best_time(copy, repeat, backend)


def device_name(backend="numpy"):
    """The backend's device, in words (CuPy: the GPU's name and whether float32 products use TF32)."""
    if backend == "cupy":
        import cupy

        name = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)["name"]
        name = name.decode() if isinstance(name, bytes) else name
        return f"{name}, float32 products in {'TF32' if os.environ.get('CUPY_TF32') == '1' else 'float32'}"
    return f"CPU ({os.cpu_count()} cores)"


def datasheet_tflops(device):
    """The datasheet peak (TFLOP/s) for a device_name() string, or None for a device not in the table."""
    mode = "TF32" if device.endswith("TF32") else "float32"
    return next((peaks[mode] for key, peaks in GPU_DATASHEET_TFLOPS.items() if key in device), None)


def this_machine(backend="numpy", quick=False):
    """This machine (or ``backend``'s device) as a Hardware, both figures measured now: float32, one process,
    all the cores BLAS uses.  The product is 2048² on a CPU, 8192² on a GPU; the copy 256 MiB, 1 GiB on a GPU."""
    check_choice("backend", backend, BACKENDS)
    gpu = backend == "cupy"
    n = 512 if quick else 8192 if gpu else 2048
    nbytes = (16 if quick else 1024 if gpu else 256) * 2**20
    peak = measure_matmul_peak(n, 2 if quick else 5, backend)
    bw = measure_copy_bandwidth(nbytes, 2 if quick else 5, backend)
    memory = float("nan") if gpu else _memory_bytes()
    name = f"this machine ({os.cpu_count()} cores)" if backend == "numpy" else f"{device_name(backend)} via {backend}"
    return Hardware(name, peak, bw, memory, 0.0, "float32",
                    f"measured: a {n}² float32 product, a copy of {nbytes // 2**20} MiB")


def _memory_bytes():
    try:
        with open("/proc/meminfo") as f:
            return float(f.readline().split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        return float("nan")


# --- the model ------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ModelShape:
    """The sizes that set a decoder's cost.  ``gated``: a SwiGLU FFN (three C × F matrices) instead of two;
    ``biases``/``norm_params``: per layer, added to the parameter count only (their FLOPs are not products)."""

    name: str
    n_layers: int  # L
    d_model: int  # C
    n_heads: int  # H
    n_kv_heads: int  # H_kv (1: multiquery; H: multi-head)
    d_head: int  # D
    d_ff: int  # F
    vocab_size: int  # V
    gated: bool = True
    tied_embeddings: bool = True  # the logits reuse the embedding table
    biases: bool = False  # every projection has a bias
    norm_params: int = 2  # parameters of each layer's norms, per channel (2: two RMSNorms; 4: two LayerNorms)

    def __post_init__(self):
        for f in ("n_layers", "d_model", "n_heads", "n_kv_heads", "d_head", "d_ff", "vocab_size"):
            check_positive_int(f, getattr(self, f))
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads={self.n_heads} must be a multiple of n_kv_heads={self.n_kv_heads}")

    @classmethod
    def from_config(cls, cfg, name="model"):
        """From a model config: a LlamaConfig (gated FFN, no biases, RMSNorm) or a TransformerConfig's decoder
        (decoder-only) or encoder stack (any other architecture: an encoder-decoder's decoder and a classifier's
        head are left out; biases, layer norms).  The config says which with ``gated_ffn``."""
        layers = cfg.n_layers if cfg.gated_ffn or cfg.architecture == "decoder-only" else cfg.n_encoder_layers
        paper = {} if cfg.gated_ffn else dict(biases=True, norm_params=4)  # the paper's biases and layer norms
        return cls(name, layers, cfg.d_model, cfg.n_heads, cfg.kv_heads, cfg.d_head, cfg.d_ff, cfg.vocab_size,
                   gated=cfg.gated_ffn, tied_embeddings=cfg.tied_embeddings, **paper)


# PaLM 540B as Pope et al. serve it: 118 layers, C = 18,432, 48 query heads of D = 256, one K/V head
# (multiquery), SwiGLU FFN of F = 4C, V = 256k, tied embeddings (Chowdhery et al. 2022, Table 1 and §2)
PALM_540B = ModelShape("PaLM 540B", 118, 18432, 48, 1, 256, 73728, 256000)
# the multi-head model Pope et al. compare it with (their §2: a KV cache of 3 TB at batch 512 × 2,048 tokens):
# 48 heads of D = 128 — the K/V width that gives both their 3 TB and their Table 1 row (see pope_table1)
PALM_540B_MULTIHEAD = dataclasses.replace(PALM_540B, name="PaLM 540B, multi-head", n_kv_heads=48, d_head=128)


def weight_matrices(shape):
    r"""Multiply-adds per token of each block's weight products: C·H·D + 2·C·H_kv·D + H·D·C + (3 or 2)·C·F."""
    s = shape
    attn = s.d_model * s.n_heads * s.d_head * 2 + 2 * s.d_model * s.n_kv_heads * s.d_head
    return attn + (3 if s.gated else 2) * s.d_model * s.d_ff


def param_count(shape):
    r"""N = V·C (embedding) + L · (weights + norms + biases) + final norm + (V·C untied output layer)."""
    s = shape
    per_layer = weight_matrices(s) + s.norm_params * s.d_model
    if s.biases:
        per_layer += s.n_heads * s.d_head + 2 * s.n_kv_heads * s.d_head + s.d_model + s.d_ff * (2 if s.gated else 1) \
            + s.d_model
    final_norm = s.norm_params // 2 * s.d_model
    out = 0 if s.tied_embeddings else s.vocab_size * s.d_model + (s.vocab_size if s.biases else 0)
    return s.vocab_size * s.d_model + s.n_layers * per_layer + final_norm + out


def forward_flops(shape, batch, new_tokens, past=0, logits="all"):
    r"""FLOPs (2 per multiply-add) of one forward of ``batch`` sequences, ``new_tokens`` T each, over ``past`` P
    cached tokens:  2·B·T·(L·weights + V·C)  +  L · 4·B·H·T·S·D  with S = P + T (QKᵀ and AV, masked or not).
    logits: "all" (a V × C product for every position), "last" (one row per sequence) or "none"."""
    check_choice("logits", logits, ("all", "last", "none"))
    s, B, T = shape, batch, new_tokens
    S = past + T
    rows = {"all": B * T, "last": B, "none": 0}[logits]
    return 2 * B * T * s.n_layers * weight_matrices(s) + 4 * s.n_layers * B * s.n_heads * T * S * s.d_head \
        + 2 * rows * s.vocab_size * s.d_model


def cross_attention_flops(shape, batch, new_tokens, memory_tokens):
    r"""FLOPs of one cross-attention block (the encoder-decoder's second sublayer) over ``memory_tokens`` S encoder
    outputs:  2·B·(T·C·H·D + T·H·D·C)  (Q, O)  +  2·B·S·2·C·H_kv·D  (K, V of the memory)  +  4·B·H·T·S·D."""
    s, B, T, S = shape, batch, new_tokens, memory_tokens
    q_and_o = 2 * B * T * 2 * s.d_model * s.n_heads * s.d_head
    k_and_v = 2 * B * S * 2 * s.d_model * s.n_kv_heads * s.d_head
    return q_and_o + k_and_v + 4 * B * s.n_heads * T * S * s.d_head


def encoder_decoder_flops(cfg, batch, src_tokens, tgt_tokens):
    r"""FLOPs of the paper's encoder-decoder forward (a TransformerConfig): the encoder over S source tokens, the
    decoder over T target tokens (self-attention, cross-attention over the S encoder outputs, FFN) and the logits
    of every target position."""
    enc = ModelShape.from_config(cfg)
    dec = dataclasses.replace(enc, n_layers=cfg.n_decoder_layers)
    return (forward_flops(enc, batch, src_tokens, logits="none") + forward_flops(dec, batch, tgt_tokens)
            + dec.n_layers * cross_attention_flops(dec, batch, tgt_tokens, src_tokens))


def flops_per_token(shape, context):
    r"""≈ 2N + 4·L·S·H·D: one decoded token with ``context`` S keys in its attention (Kaplan et al.'s 2N + 2·L·S·C
    counts the attention products once; here QKᵀ and AV are counted, as they run)."""
    return forward_flops(shape, 1, 1, context - 1, logits="all")


def kv_cache_bytes(shape, batch, context, dtype="float32"):
    r"""2 (K and V) · L · H_kv · D · S · B · bytes (decoding.cache.kv_cache_bytes)."""
    return cache_bytes(shape.n_layers, shape.n_kv_heads, shape.d_head, context * batch, BYTES[dtype])


def weight_bytes(shape, dtype="float32"):
    """N · bytes: every weight, embedding included (the tied output layer reads the whole table)."""
    return param_count(shape) * BYTES[dtype]


def step_bytes(shape, batch, new_tokens, past=0, weights="float32", kv="float32"):
    r"""Bytes one forward step moves: every weight read once + the P cached K/V read + the T new K/V written.
    Activations are left out (they are B·T·C-sized; at decode they are 10⁻⁴ of the weights)."""
    return weight_bytes(shape, weights) + kv_cache_bytes(shape, batch, past + new_tokens, kv)


def arithmetic_intensity(flops, nbytes):
    """FLOPs per byte moved."""
    return flops / nbytes


def roofline_time(flops, nbytes, hardware):
    r"""t = max(FLOPs / peak, bytes / bandwidth): the lower bound for a step on one chip."""
    return max(flops / hardware.peak_flops, nbytes / hardware.bandwidth)


def bound_by(flops, nbytes, hardware):
    """'compute' or 'memory': which term of the roofline is larger."""
    return "compute" if flops / hardware.peak_flops >= nbytes / hardware.bandwidth else "memory"


def critical_batch_size(hardware, weight_dtype="float32"):
    r"""B* = (peak / bandwidth) · bytes_per_weight / 2: a decode step does 2 FLOPs per weight per sequence and
    reads each weight once, so its intensity is 2B / bytes_per_weight; above B* it is bound by compute."""
    return hardware.critical_intensity * BYTES[weight_dtype] / 2


def mfu(flops, seconds, hardware):
    """Model FLOPs utilisation: FLOPs / (time · peak)."""
    return flops / (seconds * hardware.peak_flops)


def mbu(nbytes, seconds, hardware):
    """Memory-bandwidth utilisation: bytes moved / (time · bandwidth)."""
    return nbytes / (seconds * hardware.bandwidth)


def chips_needed(shape, batch, context, hardware, weights="float32", kv="float32"):
    r"""⌈(weight bytes + KV cache bytes of batch × context tokens) / memory per chip⌉: the fewest chips whose
    memory holds the model and its cache (activations and fragmentation left out, so a lower bound)."""
    return math.ceil((weight_bytes(shape, weights) + kv_cache_bytes(shape, batch, context, kv)) / hardware.memory)


def check_fits(shape, batch, context, hardware, n_chips, weights="float32", kv="float32"):
    """ValueError when the weights and the KV cache of batch × context tokens do not fit in n chips' memory (a
    hardware whose memory is unknown — NaN, a measured GPU — is not checked)."""
    check_positive_int("n_chips", n_chips)
    if not math.isfinite(hardware.memory):
        return
    need = chips_needed(shape, batch, context, hardware, weights, kv)
    if need > n_chips:
        raise ValueError(
            f"{shape.name} with {batch} × {context:,} tokens needs {need} chips of {hardware.memory / GiB:.0f} GiB "
            f"({hardware.name}): weights {weight_bytes(shape, weights) / GiB:.0f} GiB ({weights}) + KV cache "
            f"{kv_cache_bytes(shape, batch, context, kv) / GiB:.1f} GiB ({kv}); n_chips={n_chips}")


def _cost(f, b, hardware, n_chips):
    """(FLOPs, bytes, roofline seconds) of work shared perfectly by n chips: max(F / (n·peak), B / (n·bandwidth))."""
    return f, b, roofline_time(f / n_chips, b / n_chips, hardware)


def prefill_cost(shape, batch, tokens, hardware, weights="float32", kv="float32", n_chips=1):
    """(FLOPs, bytes, roofline seconds) of a prefill of ``tokens`` per sequence, last position's logits only, on
    n_chips sharing it perfectly; ValueError if the model and its cache do not fit in their memory (check_fits)."""
    check_fits(shape, batch, tokens, hardware, n_chips, weights, kv)
    return _cost(forward_flops(shape, batch, tokens, 0, logits="last"),
                 step_bytes(shape, batch, tokens, 0, weights, kv), hardware, n_chips)


def decode_cost(shape, batch, context, hardware, weights="float32", kv="float32", n_chips=1):
    """(FLOPs, bytes, roofline seconds) of one decode step — one new token per sequence after ``context`` − 1 —
    on n_chips sharing it perfectly; ValueError if the model and its cache do not fit in their memory."""
    check_fits(shape, batch, context, hardware, n_chips, weights, kv)
    return _cost(forward_flops(shape, batch, 1, context - 1, logits="all"),
                 step_bytes(shape, batch, 1, context - 1, weights, kv), hardware, n_chips)


# --- attention's memory traffic: why FlashAttention is fast on a GPU -------------------------------------------
def attention_hbm_bytes(n, d, itemsize=2):
    r"""Bytes standard attention moves between memory and the chip for one head of n queries and keys of width d
    (Dao et al. 2022, Algorithm 0): read Q, K (2nd), write S = QKᵀ (n²), read S and write P = softmax(S) (2n²), read
    P and V (n² + nd), write O (nd) — (4nd + 4n²)·itemsize, Θ(nd + n²): the n² scores go out and back twice."""
    check_positive_int("n", n)
    check_positive_int("d", d)
    return (4 * n * d + 4 * n * n) * itemsize


def flash_attention_hbm_bytes(n, d, sram_bytes, itemsize=2):
    r"""The same head's traffic under FlashAttention (Dao et al. 2022, Algorithm 1): keys and values in blocks of
    B_c = ⌈M / 4d⌉ (M = sram_bytes / itemsize values of on-chip memory), each read once (2nd); for each of the
    T_c = ⌈n / B_c⌉ key blocks every query block is read and its output, maximum and normaliser read and written
    (3nd + 4n) — (2nd + T_c·(3nd + 4n))·itemsize, Θ(n²d²/M).  The scores never leave the chip."""
    check_positive_int("n", n)
    check_positive_int("d", d)
    check_real("sram_bytes", sram_bytes, low=0.0, low_open=True)
    block = max(1, math.ceil(sram_bytes / itemsize / (4 * d)))
    return (2 * n * d + math.ceil(n / block) * (3 * n * d + 4 * n)) * itemsize


# --- memory per chip, and Pope et al.'s Table 1 ------------------------------------------------------------
KV_LAYOUTS = ("heads", "batch")


def kv_bytes_per_chip(shape, batch, context, n_chips, layout, dtype="bfloat16"):
    r"""KV cache bytes on each of n chips.  Sharded over heads: ⌈H_kv / n⌉ heads per chip — a multiquery cache
    (H_kv = 1) is then replicated on every chip; sharded over batch: ⌈B / n⌉ sequences per chip, all heads."""
    check_choice("layout", layout, KV_LAYOUTS)
    check_positive_int("n_chips", n_chips)
    heads = math.ceil(shape.n_kv_heads / n_chips) if layout == "heads" else shape.n_kv_heads
    seqs = batch if layout == "heads" else math.ceil(batch / n_chips)
    return cache_bytes(shape.n_layers, heads, shape.d_head, context * seqs, BYTES[dtype])


def max_context(shape, batch, hardware, n_chips, layout, kv_fraction=0.3, dtype="bfloat16"):
    r"""The longest context whose KV cache fits in ``kv_fraction`` of each chip's memory:
    ⌊kv_fraction · memory / (KV bytes per chip per token)⌋."""
    check_real("kv_fraction", kv_fraction, low=0.0, high=1.0, low_open=True)
    per_token = kv_bytes_per_chip(shape, batch, 1, n_chips, layout, dtype)
    return math.floor(kv_fraction * hardware.memory / per_token)


# Pope et al. Table 1: PaLM 540B on 64 TPU v4 chips, 30% of the memory for the KV cache, bfloat16
POPE_TABLE1 = {("multihead", 128): 1320, ("multihead", 512): 330,
               ("baseline multiquery", 128): 660, ("baseline multiquery", 512): 165,
               ("optimized multiquery", 128): 43000, ("optimized multiquery", 512): 10700}
POPE_VARIANTS = {"multihead": (PALM_540B_MULTIHEAD, "heads"), "baseline multiquery": (PALM_540B, "heads"),
                 "optimized multiquery": (PALM_540B, "batch")}


def pope_table1(n_chips=64, kv_fraction=0.3):
    """Rows (variant, batch, published, ours, relative difference) of Pope et al.'s Table 1, recomputed."""
    rows = []
    for (variant, batch), published in POPE_TABLE1.items():
        shape, layout = POPE_VARIANTS[variant]
        ours = max_context(shape, batch, HARDWARE["tpu-v4"], n_chips, layout, kv_fraction)
        rows.append(dict(variant=variant, batch=batch, layout=layout, published=published, ours=ours,
                         difference=ours / published - 1))
    return rows


def decode_lower_bound(shape, batch, context, hardware, n_chips, weights="bfloat16", kv="bfloat16"):
    r"""The shortest a decode step can take on n chips that share the work perfectly and never wait for each
    other: max(FLOPs / (n · peak), bytes / (n · bandwidth)) — communication and every overhead left out; the
    model and its cache must fit in the n chips' memory."""
    return decode_cost(shape, batch, context, hardware, weights, kv, n_chips)[2]


def pope_published(n_chips=64, context=2048):
    """Pope et al.'s headline numbers (their abstract) beside what this cost model says: the measured 29 ms per
    token of PaLM 540B with int8 weights on 64 TPU v4 chips against the memory-bound floor of the same step
    (batch 1, a 2,048-token context), and multiquery's 32× longer context against Table 1's ratio recomputed."""
    hw = HARDWARE["tpu-v4"]
    floor = decode_lower_bound(PALM_540B, 1, context, hw, n_chips, weights="int8")
    table = {(r["variant"], r["batch"]): r["ours"] for r in pope_table1(n_chips)}
    ratio = table[("optimized multiquery", 128)] / table[("multihead", 128)]
    return [dict(quantity="decode ms/token, int8 weights, batch 1", published=29.0, ours=floor * 1e3,
                 note="published: measured; ours: the lower bound (weights read once at 1.2 TB/s per chip)"),
            dict(quantity="context, optimized multiquery / multi-head", published=32.0, ours=ratio,
                 note="Table 1 at batch 128, recomputed")]
