"""``python -m transformer_np bench {forward, decode, embed, llm, serve, quality, cost}``: forward-pass speed against
torch and the matmul peak, decoding speed with and without the KV cache, MiniLM sentence embeddings against
sentence-transformers, SmolLM2's decoding and prefill against transformers and the memory-bandwidth roofline,
the serving techniques (bench serve), every compression method's quality and bytes (bench_quality.py), and
the cost model against measured times (bench_cost.py).

Numbers, not tests: it prints what this machine does.  Each timing is the best of ``repeat`` runs (erf's alone: at
least 20) after one warm-up run, so that first-call costs (allocation, thread start) are left out.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform
import time
import tracemalloc

import matplotlib
import numpy as np

from ..core.attention import project_kv, scaled_dot_product_attention, split_heads
from ..core.backend import erf, to_backend
from ..core.masks import causal_mask
from ..core.nn import gelu, layer_norm, linear, softmax
from ..core.tree import count_params, flatten
from ..decoding.search import greedy
from ..decoding.sessions import LMSession
from ..efficient.blockwise import blockwise_attention
from ..efficient.cost_model import best_time, measure_matmul_peak
from ..efficient.serve import random_workload, simulate
from ..efficient.speculative import ModelDraft, PromptLookup, early_exit, expected_speedup, speculative_generate
from ..interop import TransformerEncoderLayer, to_torch
from ..model.checkpoint import write_json
from ..model.config import TransformerConfig
from ..model.models import DecoderLM, Transformer
from ..model.params import init_params
from ..model.stacks import encoder
from ..pretrained.llama import LlamaConfig, LlamaModel, init_llama_params, smollm2_path
from ..pretrained.minilm import default_path
from ..pretrained.registry import load
from ..pretrained.sentences import SEARCH_SENTENCES
from ..teaching import peers
from ..viz import plots
from .bench_cost import bench_cost
from .bench_quality import bench_quality
from .options import check_output_dir, check_output_file, non_negative_int, positive_int

HELP = "print speed numbers (not a test)"
ERRORS = (ImportError, RuntimeError, ValueError)  # a backend not installed or without a device; bad options


def add_arguments(bench):
    bench.add_argument("what", choices=["forward", "decode", "embed", "llm", "serve", "quality", "cost"],
                       help="what to time (quality: every compression method against float32; cost: the cost "
                            "model's predictions against measured times)")
    bench.add_argument("--tokens", type=positive_int, default=None,
                       help="quality: evaluation tokens (default: all 23,294 of the shipped text)")
    bench.add_argument("--json", metavar="PATH", help="also write the numbers to this JSON file")
    bench.add_argument("--quick", action="store_true", help="tiny shapes, for a smoke test")
    bench.add_argument("--repeat", type=positive_int, default=3, help="timed runs per workload (best is kept)")
    bench.add_argument("--no-torch", action="store_true", help="skip the torch comparison")
    bench.add_argument("--backend", choices=["numpy", "torch", "cupy"], default="numpy",
                       help="also run transformer_np's functions on this library's arrays (cupy: GPU)")
    bench.add_argument("--breakdown", action="store_true", help="forward: also time the parts of one encoder layer")
    bench.add_argument("--random-weights", action="store_true",
                       help="llm: SmolLM2's shape with random weights (the same timings, no GGUF file needed)")
    bench.add_argument("--plot", metavar="PATH",
                       help="decode, cost: draw the plot to this PNG; quality: write its three figures into this "
                            "folder (default: nothing is drawn; the committed ones are in figures/)")
    bench.add_argument("--no-cache-up-to", type=non_negative_int, default=None, metavar="N",
                       help="decode: time the recomputing path only up to N tokens (it is O(N^2))")


BACKENDS_FOR = ("forward", "decode", "llm")  # the benchmarks that can run on another library's arrays


def run(args, print_fn=print):
    check_output_file("--json", args.json)
    if args.backend != "numpy" and args.what not in BACKENDS_FOR:
        raise ValueError(f"--backend {args.backend}: only bench {', '.join(BACKENDS_FOR)} run on another "
                         f"library's arrays, not bench {args.what}")
    if args.random_weights and args.what != "llm":
        raise ValueError(f"--random-weights: only bench llm has weights to replace, not bench {args.what}")
    if args.plot is not None:
        if args.what not in ("decode", "cost", "quality"):
            raise ValueError(f"--plot: only bench decode, cost and quality draw, not bench {args.what}")
        (check_output_dir if args.what == "quality" else check_output_file)("--plot", args.plot)
    if args.what == "embed":
        result = bench_embed(print_fn=print_fn)
    elif args.what == "quality":
        result = bench_quality(tokens=args.tokens, print_fn=print_fn, figure_dir=args.plot)
    elif args.what == "cost":
        result = bench_cost(quick=args.quick, repeat=args.repeat, plot=args.plot, print_fn=print_fn)
    elif args.what == "llm":
        result = bench_llm(quick=args.quick, with_torch=not args.no_torch, backend=args.backend,
                           random_weights=args.random_weights, print_fn=print_fn)
    elif args.what == "serve":
        result = bench_serve(quick=args.quick, print_fn=print_fn)
    elif args.what == "decode":
        result = bench_decode(quick=args.quick, backend=args.backend, plot=args.plot,
                              no_cache_up_to=args.no_cache_up_to, print_fn=print_fn)
    else:
        result = bench_forward(quick=args.quick, repeat=args.repeat, with_torch=not args.no_torch,
                               backend=args.backend, print_fn=print_fn)
        if args.breakdown:
            result["breakdown_s"] = bench_breakdown(quick=args.quick, repeat=args.repeat, print_fn=print_fn)
            result["erf"] = bench_erf(quick=args.quick, repeat=args.repeat, print_fn=print_fn)
    if args.json:
        write_json(result, args.json)
        print_fn(f"wrote {args.json}")
    return 0


def matmul_peak(n=2048, repeat=5):
    """Achieved float32 GFLOP/s of one np.matmul of two n x n matrices: the ceiling NumPy code can reach."""
    return measure_matmul_peak(n, repeat) / 1e9


def layer_flops(T, S, C, F, cross=False):
    """2 x multiply-adds of one layer's matmuls: projections, QK^T and AV, FFN; with cross=True also the
    cross-attention's projections and its attention over S keys."""
    self_attn = 2 * (4 * T * C * C) + 2 * (2 * T * T * C)
    ffn = 2 * (2 * T * C * F)
    cross_attn = 2 * (2 * T * C * C + 2 * S * C * C) + 2 * (2 * T * S * C) if cross else 0
    return self_attn + ffn + cross_attn


def workloads(quick):
    """(name, config, B, S, T, encoder_only)."""
    if quick:
        return [("encoder-decoder, tiny", TransformerConfig.tiny(), 1, 16, 16, False),
                ("encoder, tiny", TransformerConfig.tiny(activation="gelu"), 1, 32, 0, True)]
    base = TransformerConfig.paper_base(vocab_size=37000, max_len=512)
    gpt2 = TransformerConfig(d_model=768, n_heads=12, n_encoder_layers=12, n_decoder_layers=0, d_ff=3072,
                             vocab_size=50257, max_len=1024, activation="gelu", norm_first=True)
    return [("encoder-decoder, paper base (V=37000), B=1, S=T=256", base, 1, 256, 256, False),
            ("encoder, GPT-2-small shape (12 layers, C=768), B=1, S=512", gpt2, 1, 512, 0, True)]


def bench_forward(quick=False, repeat=3, with_torch=True, backend="numpy", print_fn=print):
    """Time each workload in NumPy, in torch eager on identical weights (when installed), and — with
    ``backend`` "cupy" or "torch" — the same transformer_np functions running on that library's arrays."""
    peak = matmul_peak(512 if quick else 2048, repeat)
    rows = []
    torch = None
    if with_torch:
        try:
            import torch
        except ImportError:
            print_fn("torch is not installed: NumPy timings only")
    for name, cfg, B, S, T, encoder_only in workloads(quick):
        rng = np.random.default_rng(0)
        flops = B * sum(layer_flops(S, S, cfg.d_model, cfg.d_ff) for _ in range(cfg.n_encoder_layers))
        if encoder_only:
            params = init_params(cfg.replace(vocab_size=1), 0)["encoder"]  # no embedding: bench the stack
            x = rng.standard_normal((B, S, cfg.d_model), dtype=np.float32)
            np_fn = functools.partial(encoder, x, params, cfg)
            torch_fn = _torch_encoder(torch, params, cfg, x) if torch else None
            on_backend = (functools.partial(encoder, to_backend(x, backend), to_backend(params, backend), cfg)
                          if backend != "numpy" else None)
        else:
            flops += B * sum(layer_flops(T, S, cfg.d_model, cfg.d_ff, cross=True)
                             for _ in range(cfg.n_decoder_layers))
            flops += B * 2 * T * cfg.d_model * cfg.vocab_size  # output projection
            model = Transformer.from_config(cfg, seed=0)
            src, tgt = rng.integers(0, cfg.vocab_size, (B, S)), rng.integers(0, cfg.vocab_size, (B, T))
            np_fn = functools.partial(model, src, tgt)
            torch_fn = _torch_model(torch, model, src, tgt) if torch else None
            on_backend = (functools.partial(to_backend(model, backend), to_backend(src, backend),
                                            to_backend(tgt, backend)) if backend != "numpy" else None)
        peer_fn = functools.partial(peers.encoder, x, params, cfg) if encoder_only and cfg.norm_first else None
        memory = {k: _peak_rss(fn) for k, fn in (("numpy", np_fn), ("torch", torch_fn), ("picogpt", peer_fn)) if fn}
        np_time = best_time(np_fn, repeat)
        torch_time = best_time(torch_fn, repeat) if torch_fn else None
        peer_time = best_time(peer_fn, repeat) if peer_fn else None
        backend_time = best_time(_synced(on_backend, backend), repeat) if on_backend else None
        gflops = flops / np_time / 1e9
        rows.append(dict(workload=name, gflop=flops / 1e9, numpy_s=np_time, torch_s=torch_time,
                         numpy_over_torch=(np_time / torch_time) if torch_time else None,
                         numpy_gflops=gflops, fraction_of_matmul_peak=gflops / peak,
                         picogpt_s=peer_time, speedup_over_picogpt=(peer_time / np_time) if peer_time else None,
                         peak_rss_mb=memory, backend=backend, backend_s=backend_time,
                         backend_tflops=(flops / backend_time / 1e12) if backend_time else None))
    result = dict(machine=_machine(), matmul_peak_gflops=peak, rows=rows)
    print_fn(f"float32 np.matmul peak: {peak:.1f} GFLOP/s   ({result['machine']['summary']})")
    extra = f" {'on ' + backend + ' ms':>12} {'TFLOP/s':>8}" if backend != "numpy" else ""
    print_fn(f"{'workload':<62} {'GFLOP':>7} {'numpy ms':>9} {'torch ms':>9} {'np/torch':>8} "
             f"{'GFLOP/s':>8} {'% peak':>7}{extra}")
    for r in rows:
        t = f"{1e3 * r['torch_s']:9.1f}" if r["torch_s"] else f"{'-':>9}"
        ratio = f"{r['numpy_over_torch']:8.2f}" if r["numpy_over_torch"] else f"{'-':>8}"
        more = f" {1e3 * r['backend_s']:12.2f} {r['backend_tflops']:8.2f}" if r["backend_s"] else ""
        print_fn(f"{r['workload']:<62} {r['gflop']:7.2f} {1e3 * r['numpy_s']:9.1f} {t} {ratio} "
                 f"{r['numpy_gflops']:8.1f} {100 * r['fraction_of_matmul_peak']:6.0f}%{more}")
    for r in rows:
        if r["picogpt_s"]:
            print_fn(f"  picoGPT-style NumPy (heads as a list, tanh GELU) on the same weights: "
                     f"{1e3 * r['picogpt_s']:.1f} ms; ours is {r['speedup_over_picogpt']:.2f}x faster")
        mem = ", ".join(f"{k} {v:.0f} MB" for k, v in r["peak_rss_mb"].items())
        print_fn(f"  peak memory of one forward above its inputs and weights (RSS high-water mark): {mem}")
    if backend != "numpy":
        result["backend"] = _forward_backend_peaks(rows, backend, quick, print_fn)
    return result


def _forward_backend_peaks(rows, backend, quick, print_fn):
    """The backend's measured matrix-product peak (and its datasheet peak, for a GPU in the table), and each
    workload's fraction of both, stored in the rows and printed."""
    device = device_name(backend)
    peak = backend_matmul_peak(backend, 512 if quick else 8192 if backend == "cupy" else 2048) / 1e12
    sheet = datasheet_tflops(device)
    for r in rows:
        r["backend_fraction_of_matmul_peak"] = r["backend_tflops"] / peak
        r["backend_fraction_of_datasheet"] = r["backend_tflops"] / sheet if sheet else None
    print_fn(f"on {backend} ({device}): matrix-product peak {peak:.1f} TFLOP/s measured"
             + (f", {sheet} TFLOP/s on the datasheet (dense)" if sheet else ""))
    for r in rows:
        print_fn(f"  {r['workload']}: {r['backend_tflops']:.2f} TFLOP/s = "
                 f"{100 * r['backend_fraction_of_matmul_peak']:.0f}% of the measured peak"
                 + (f", {100 * r['backend_fraction_of_datasheet']:.0f}% of the datasheet's" if sheet else ""))
    return dict(device=device, matmul_peak_tflops=peak, datasheet_tflops=sheet)


def _peak_rss(fn):
    """MB the process's resident memory rose to while ``fn`` ran, above what it held before (Linux with glibc:
    freed heap pages are returned first, the high-water mark is reset through /proc/self/clear_refs; elsewhere
    None).  Measured on a first call."""
    def field(name):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(name))  # kB

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed heap pages back, so "before" is what is in use
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = field("VmRSS:")
    except OSError:
        return None
    fn()
    return (field("VmHWM:") - before) / 1024


def _synced(fn, backend):
    """fn followed by a wait for the device to finish, so that GPU timings are real."""
    return lambda: (fn(), _sync(backend))


def bench_breakdown(quick=False, repeat=3, print_fn=print):
    """Where the time of one encoder layer goes, at the GPT-2-small workload's shapes (x L layers)."""
    name, cfg, B, S, _, _ = workloads(quick)[-1]
    p = init_params(cfg.replace(vocab_size=1), 0)["encoder"]["layers"][0]
    a, f = p["self_attn"], p["ffn"]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((B, S, cfg.d_model), dtype=np.float32)
    q = split_heads(linear(x, a["w_q"], a["b_q"]), cfg.n_heads)
    k, v = project_kv(x, x, a["w_k"], a["b_k"], a["w_v"], a["b_v"], n_heads=cfg.n_heads)
    scores = q @ k.mT
    weights = softmax(scores)
    hidden = linear(x, f["w1"], f["b1"])
    parts = {
        "Q, K, V, O projections (matmul)": lambda: [linear(x, a[w], a[b]) for w, b in
                                                    (("w_q", "b_q"), ("w_k", "b_k"), ("w_v", "b_v"), ("w_o", "b_o"))],
        "attention QK^T and AV (matmul)": lambda: (q @ k.mT, weights @ v),
        "attention softmax": lambda: softmax(scores),
        "attention, whole (scaled_dot_product_attention)": lambda: scaled_dot_product_attention(q, k, v),
        "FFN W1, W2 (matmul)": lambda: (linear(x, f["w1"], f["b1"]), linear(hidden, f["w2"], f["b2"])),
        "GELU (erf)": lambda: gelu(hidden),
        "2 layer norms + 2 residual adds": lambda: (layer_norm(x + x, **p["norm1"]), layer_norm(x + x, **p["norm2"])),
    }
    print_fn(f"one layer of '{name}', x {cfg.n_encoder_layers} layers:")
    result = {}
    for label, fn in parts.items():
        t = best_time(fn, repeat) * cfg.n_encoder_layers
        result[label] = t
        print_fn(f"  {label:<50} {1e3 * t:8.1f} ms")
    return result


def bench_erf(quick=False, repeat=3, print_fn=print):
    """float32 erf on an array of the GPT-2-small workload's FFN activation shape (B·S, F), standard normal
    values times 2 (GELU takes erf of its input over √2): ours (``core.fast``: cache-sized pieces over threads)
    against ``scipy.special.erf`` (one pass, one thread) on the same array, and our largest distance in ulp from
    scipy's float64 erf rounded to float32.  Without scipy: ours alone.  Each is the best of at least 20 runs:
    they take milliseconds, and the best of 5 still caught this shared machine's noise (3.6-7.2x over three
    runs)."""
    repeat = max(repeat, 20)
    _, cfg, B, S, _, _ = workloads(quick)[-1]
    z = np.random.default_rng(0).standard_normal((B * S, cfg.d_ff), dtype=np.float32) * np.float32(2)
    ours = erf(z)
    result = dict(shape=list(z.shape), repeat=repeat, ours_s=best_time(lambda: erf(z), repeat), scipy_s=None,
                  speedup=None, max_ulp_vs_float64=None)
    try:
        from scipy.special import erf as scipy_erf
    except ImportError:
        print_fn(f"erf, float32 {z.shape}: ours {1e3 * result['ours_s']:.2f} ms (scipy not installed)")
        return result
    out = np.empty_like(z)
    result["scipy_s"] = best_time(lambda: scipy_erf(z, out=out), repeat)
    result["speedup"] = result["scipy_s"] / result["ours_s"]
    exact = scipy_erf(z.astype(np.float64)).astype(np.float32)  # within 1 ulp of float64, then rounded
    result["max_ulp_vs_float64"] = int(np.abs(ours.view(np.int32).astype(np.int64)
                                              - exact.view(np.int32).astype(np.int64)).max())
    print_fn(f"erf, float32 {z.shape}: ours {1e3 * result['ours_s']:.2f} ms, scipy.special.erf "
             f"{1e3 * result['scipy_s']:.2f} ms (best of {repeat}): scipy / ours = {result['speedup']:.1f}x "
             f"(target >= 5x), at most {result['max_ulp_vs_float64']} ulp from float64 erf rounded")
    return result


def decode_model(quick=False):
    """The decode benchmark's model: a GPT-2-small-width decoder (C=768, 12 heads, 4 layers, V=8192)."""
    if quick:
        return DecoderLM(TransformerConfig.lm_tiny(max_len=128), seed=0)
    cfg = TransformerConfig(d_model=768, n_heads=12, n_encoder_layers=0, n_decoder_layers=4, d_ff=3072,
                            vocab_size=8192, max_len=1040, activation="gelu", norm_first=True,
                            architecture="decoder-only")
    return DecoderLM(cfg, seed=0)


def bench_decode(lengths=(64, 128, 256, 512, 1024), quick=False, backend="numpy", no_cache_up_to=None,
                 plot=None, print_fn=print):
    """Greedy generation of n tokens from an 8-token prompt, with and without the KV cache: tokens/s.

    The plain path recomputes the whole forward pass at every step, so it costs O(n^2) per run: it is timed
    up to ``no_cache_up_to`` tokens (all lengths by default)."""
    model = to_backend(decode_model(quick), backend) if backend != "numpy" else decode_model(quick)
    if quick:
        lengths = (8, 16, 32)
    prompt = [list(range(1, 9))]
    rows = []
    for n in lengths:
        row = dict(tokens=n)
        for use_cache in (True, False):
            if not use_cache and no_cache_up_to is not None and n > no_cache_up_to:
                continue
            session = LMSession(model, prompt, use_cache=use_cache)
            t0 = time.perf_counter()
            out = greedy(session, n)
            _sync(backend)
            dt = time.perf_counter() - t0
            assert len(out[0]) == n
            key = "cache" if use_cache else "no_cache"
            row[f"{key}_s"], row[f"{key}_tokens_per_s"] = dt, n / dt
            if use_cache:
                row["cache_bytes"] = session.cache_bytes()
        if "no_cache_s" in row:
            row["speedup"] = row["no_cache_s"] / row["cache_s"]
        rows.append(row)
        print_fn(_decode_line(row))
    first, last = rows[0], rows[-1]
    result = dict(machine=_machine(), model=repr(model), backend=backend, prompt_tokens=8, rows=rows,
                  per_token_growth=(last["cache_s"] / last["tokens"]) / (first["cache_s"] / first["tokens"]))
    print_fn(f"with the cache, per-token time at {last['tokens']} tokens / at {first['tokens']}: "
             f"{result['per_token_growth']:.2f}x")
    if plot:
        _plot_decode(rows, model, plot)
        print_fn(f"wrote {plot}")
    return result


def _decode_line(row):
    nc = (f"{row['no_cache_tokens_per_s']:9.1f} tok/s  {row['speedup']:6.1f}x" if "no_cache_s" in row
          else f"{'(not timed)':>17}")
    return (f"{row['tokens']:5d} tokens: cache {row['cache_tokens_per_s']:9.1f} tok/s "
            f"({1e3 * row['cache_s'] / row['tokens']:6.2f} ms/token, cache {row['cache_bytes'] / 2**20:7.1f} MiB)"
            f"   no cache {nc}")


def _plot_decode(rows, model, path):
    matplotlib.use("Agg")
    title = f"Greedy decoding, measured on this machine\n{model!r}"
    plots.save(plots.decode_speed(rows, title), path)


def _sync(backend):
    if backend == "cupy":
        import cupy

        cupy.cuda.get_current_stream().synchronize()


def _torch_encoder(torch, params, cfg, x):
    layers = [to_torch(TransformerEncoderLayer(p, cfg, batch_first=True)) for p in params["layers"]]
    norm = torch.nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
    norm.weight.data, norm.bias.data = (torch.from_numpy(params["norm"][k]) for k in ("gamma", "beta"))
    stack = torch.nn.Sequential(*layers, norm).eval()
    xt = torch.from_numpy(x)

    def run():
        with torch.inference_mode():
            return stack(xt)

    return run


def _torch_model(torch, model, src, tgt):
    module = to_torch(model)
    s, t = torch.from_numpy(src), torch.from_numpy(tgt)

    def run():
        with torch.inference_mode():
            return module(s, t)

    return run


def _machine():
    info = dict(python=platform.python_version(), numpy=np.__version__, cpus=os.cpu_count(),
                processor=platform.processor() or platform.machine())
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    info["summary"] = f"{info['cpus']} CPUs, numpy {info['numpy']}" + (
        f", torch {info['torch']} ({info['torch_threads']} threads)" if "torch" in info else "")
    return info



def bench_embed(n=1000, batch_size=32, path=None, print_fn=print):
    """Sentences per second for n sentences, in NumPy and (if installed) in sentence-transformers on torch."""
    rng = np.random.default_rng(0)
    words = " ".join(SEARCH_SENTENCES).replace(".", "").split()
    texts = [" ".join(rng.choice(words, size=int(rng.integers(5, 30)))) for _ in range(n)]
    model = load(path or "minilm")
    model.encode(texts[:batch_size])  # warm-up
    t0 = time.perf_counter()
    mine = model.encode(texts, batch_size=batch_size)
    numpy_s = time.perf_counter() - t0
    result = {"sentences": n, "batch_size": batch_size, "numpy_s": numpy_s, "numpy_per_s": n / numpy_s}
    print_fn(f"transformer_np (NumPy): {n} sentences in {numpy_s:.2f} s = {n / numpy_s:.0f} sentences/s")
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        print_fn("sentence-transformers is not installed: no torch comparison in this run")
        return result
    st_model = SentenceTransformer(str(path or default_path()), device="cpu")
    st_model.encode(texts[:batch_size], batch_size=batch_size)
    t0 = time.perf_counter()
    theirs = st_model.encode(texts, batch_size=batch_size, convert_to_numpy=True)
    st_s = time.perf_counter() - t0
    result.update(torch_s=st_s, torch_per_s=n / st_s, max_abs_diff=float(np.abs(mine - theirs).max()))
    print_fn(f"sentence-transformers (torch CPU): {n / st_s:.0f} sentences/s; "
             f"NumPy / torch time {numpy_s / st_s:.2f}x; max |difference| {result['max_abs_diff']:.1e}")
    return result


def copy_bandwidth(nbytes=2**28, repeat=5):
    """Achieved memory bandwidth (bytes/s) of np.copyto between two arrays of nbytes, far larger than the
    caches: each copy reads nbytes and writes nbytes."""
    src = np.ones(nbytes // 4, np.float32)
    dst = np.empty_like(src)
    return 2 * nbytes / best_time(lambda: np.copyto(dst, src), repeat)


def llm_decode_bytes(model, context):
    """Bytes a decode step reads: every weight once (the tied embedding table as the output layer) and the KV
    cache of ``context`` tokens."""
    weights = sum(int(a.nbytes) for a in flatten(model.params).values() if a is not None)
    return weights + model.config.kv_cache_bytes_per_token() * context


def _llm_for_bench(quick, random_weights):
    """(model, load seconds, prompt ids, long prompt ids): SmolLM2-135M-Instruct read from its GGUF file, or — with
    ``random_weights`` — a model of exactly its shape with random weights (timings do not depend on the values;
    no file to carry, e.g. to a GPU machine) fed random token ids of the same lengths."""
    t0 = time.perf_counter()
    if random_weights:
        cfg = LlamaConfig()  # SmolLM2-135M's shape
        model = LlamaModel(init_llama_params(cfg, seed=0), cfg, tokenizer=None, name="SmolLM2-135M's shape, random")
        rng = np.random.default_rng(0)
        prompt = rng.integers(0, cfg.vocab_size, 39).tolist()  # the length of the chat prompt below
        long_prompt = rng.integers(0, cfg.vocab_size, 64 if quick else 512).tolist()
        return model, time.perf_counter() - t0, prompt, long_prompt
    model = load("smollm2")
    load_s = time.perf_counter() - t0
    prompt = model.chat_ids([{"role": "user", "content": "Tell me a long story about the sea."}])
    words = model.tokenize(" ".join(["the quick brown fox jumps over the lazy dog"] * 80))
    return model, load_s, prompt, words[: 64 if quick else 512]


def _llm_times(model, prompt, long_prompt, lengths, quick):
    """Seconds of greedy decoding of each of ``lengths`` new tokens (with the KV cache) and of the prefill of
    ``long_prompt`` (best of 3), on the library ``model``'s params live in (each step reads its logits back to the
    host, which waits for the device)."""
    times = {}
    model.generate(prompt, 2, eos_id=None)  # warm-up: first-call costs (allocation, kernel compilation) left out
    for n in lengths:
        t0 = time.perf_counter()
        out = model.generate(prompt, n, eos_id=None)
        times[n] = time.perf_counter() - t0
        assert len(out) == n
    times["prefill"] = best_time(lambda: LMSession(model, [long_prompt]), 1 if quick else 3)
    return times


def bench_llm(quick=False, with_torch=True, backend="numpy", random_weights=False, print_fn=print):
    """SmolLM2-135M-Instruct: load time, greedy decoding tokens/s (64 and 256 new tokens after a chat prompt),
    prefill time of a 512-token prompt, in NumPy and in transformers (float32, CPU, same threads), and decoding's
    fraction of the memory-bandwidth roofline.  ``backend`` "cupy" or "torch": the same transformer_np functions
    on that library's arrays too, with the roofline of its device's copy bandwidth.  ``random_weights``: SmolLM2's
    shape with random weights (no GGUF file needed; no transformers comparison)."""
    if backend != "numpy":
        to_backend({}, backend)  # a library that is not installed fails now, not after the NumPy runs
    model, load_s, prompt, long_prompt = _llm_for_bench(quick, random_weights)
    lengths = (8, 16) if quick else (64, 256)
    bandwidth = copy_bandwidth(2**24 if quick else 2**28)
    ours = _llm_times(model, prompt, long_prompt, lengths, quick)
    theirs = _hf_llm_times(prompt, long_prompt, lengths, quick) if with_torch and not random_weights else {}
    rows = []
    for n in lengths:
        roofline_s = llm_decode_bytes(model, (len(prompt) + n) // 2) / bandwidth  # per token, mid-run context
        per_token = ours[n] / n
        rows.append(dict(new_tokens=n, numpy_s=ours[n], numpy_tokens_per_s=n / ours[n],
                         transformers_s=theirs.get(n), transformers_tokens_per_s=(n / theirs[n]) if n in theirs
                         else None, roofline_s_per_token=roofline_s, fraction_of_roofline=roofline_s / per_token))
    result = dict(machine=_machine(), model=repr(model), random_weights=random_weights, load_s=load_s,
                  prompt_tokens=len(prompt), copy_bandwidth_gb_s=bandwidth / 1e9,
                  weight_bytes=llm_decode_bytes(model, 0), decode=rows, prefill_tokens=len(long_prompt),
                  prefill_numpy_s=ours["prefill"], prefill_transformers_s=theirs.get("prefill"))
    how = "made (random weights)" if random_weights else "loaded (read + dequantize)"
    print_fn(f"{model!r}: {how} in {load_s:.2f} s; weights {result['weight_bytes'] / 1e6:.0f} "
             f"MB float32; copy bandwidth {bandwidth / 1e9:.1f} GB/s   ({result['machine']['summary']})")
    print_fn(f"{'greedy decode':<22} {'numpy tok/s':>12} {'transformers':>13} {'numpy/them':>11} {'% roofline':>11}")
    for r in rows:
        them = f"{r['transformers_tokens_per_s']:13.1f}" if r["transformers_s"] else f"{'-':>13}"
        ratio = f"{r['numpy_tokens_per_s'] / r['transformers_tokens_per_s']:10.2f}x" if r["transformers_s"] \
            else f"{'-':>11}"
        print_fn(f"{r['new_tokens']:>4} new tokens{'':<8} {r['numpy_tokens_per_s']:12.1f} {them} {ratio} "
                 f"{100 * r['fraction_of_roofline']:10.0f}%")
    them = f"{result['prefill_transformers_s']:.3f} s" if result["prefill_transformers_s"] else "-"
    print_fn(f"prefill of {len(long_prompt)} tokens: numpy {ours['prefill']:.3f} s, transformers {them}")
    if backend != "numpy":
        result["backend"] = _llm_on_backend(model, prompt, long_prompt, lengths, quick, backend, print_fn)
    return result


def _llm_on_backend(model, prompt, long_prompt, lengths, quick, backend, print_fn):
    """bench_llm's workloads with the params on ``backend``; the roofline from that device's copy bandwidth."""
    moved = to_backend(model, backend)
    bandwidth = backend_copy_bandwidth(backend, 2**24 if quick else 2**30 if backend == "cupy" else 2**28)
    times = _llm_times(moved, prompt, long_prompt, lengths, quick)
    rows = [dict(new_tokens=n, seconds=times[n], tokens_per_s=n / times[n],
                 fraction_of_roofline=llm_decode_bytes(model, (len(prompt) + n) // 2) / bandwidth / (times[n] / n))
            for n in lengths]
    prefill_flops = 2 * count_params(model.params["decoder"]) * len(long_prompt)  # the layers' products only
    out = dict(backend=backend, device=device_name(backend), copy_bandwidth_gb_s=bandwidth / 1e9, decode=rows,
               prefill_s=times["prefill"], prefill_tflops=prefill_flops / times["prefill"] / 1e12)
    print_fn(f"on {backend} ({out['device']}; copy bandwidth {bandwidth / 1e9:.0f} GB/s):")
    for r in rows:
        print_fn(f"{r['new_tokens']:>4} new tokens{'':<8} {r['tokens_per_s']:12.1f} tok/s "
                 f"{100 * r['fraction_of_roofline']:10.0f}% of the roofline")
    print_fn(f"prefill of {len(long_prompt)} tokens: {times['prefill'] * 1e3:.1f} ms "
             f"({out['prefill_tflops']:.2f} TFLOP/s in the layers' matrix products)")
    return out


def backend_copy_bandwidth(backend, nbytes, repeat=5):
    """Achieved bandwidth (bytes/s, read + write) of copying an array of nbytes on ``backend``'s device."""
    if backend == "numpy":
        return copy_bandwidth(nbytes, repeat)
    src, dst = (to_backend(np.ones(nbytes // 4, np.float32), backend) for _ in range(2))
    if backend == "cupy":
        import cupy

        copy = functools.partial(cupy.copyto, dst, src)
    else:
        copy = functools.partial(dst.copy_, src)  # torch: into an allocated array, as np.copyto
    return 2 * nbytes / best_time(_synced(copy, backend), repeat)


def backend_matmul_peak(backend, n, repeat=5):
    """Achieved float32 FLOP/s of one n x n matrix product on ``backend`` (CuPy: TF32 when CUPY_TF32=1)."""
    rng = np.random.default_rng(0)
    a, b = (to_backend(rng.standard_normal((n, n), dtype=np.float32), backend) for _ in range(2))
    return 2 * n**3 / best_time(_synced(lambda: a @ b, backend), repeat)


def device_name(backend):
    """The backend's device, in words (CuPy: the GPU's name and whether float32 products use TF32)."""
    if backend == "cupy":
        import cupy

        name = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)["name"]
        name = name.decode() if isinstance(name, bytes) else name
        return f"{name}, float32 products in {'TF32' if os.environ.get('CUPY_TF32') == '1' else 'float32'}"
    return "CPU"


# dense datasheet peaks of GPUs this project may be lent (NVIDIA's H100/H200 SXM figures), TFLOP/s: the fraction
# of peak that bench forward prints beside the measured product's
GPU_DATASHEET_TFLOPS = {"H200": {"float32": 66.9, "TF32": 494.7}, "H100 80GB HBM3": {"float32": 66.9, "TF32": 494.7}}


def datasheet_tflops(device):
    """The datasheet peak (TFLOP/s) for a device_name() string, or None for a device not in the table."""
    mode = "TF32" if device.endswith("TF32") else "float32"
    return next((peaks[mode] for key, peaks in GPU_DATASHEET_TFLOPS.items() if key in device), None)


def _hf_llm_times(prompt, long_prompt, lengths, quick):
    """The same workloads in transformers' LlamaForCausalLM loaded from the same GGUF file (float32, CPU)."""
    try:
        import torch
        from transformers import AutoModelForCausalLM
    except ImportError:
        return {}
    path = smollm2_path()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    hf = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()
    times = {}
    ids = torch.tensor([prompt])
    with torch.inference_mode():
        for n in lengths:
            t0 = time.perf_counter()
            hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n,
                        do_sample=False, pad_token_id=2)
            times[n] = time.perf_counter() - t0
        long_ids = torch.tensor([long_prompt])
        times["prefill"] = best_time(lambda: hf(long_ids, logits_to_keep=1, use_cache=True), 1 if quick else 3)
    return times


def _peak_bytes(fn):
    """(result, peak bytes allocated while fn ran), by tracemalloc (NumPy reports its buffers to it)."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        out = fn()
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def bench_serve(quick=False, print_fn=print):
    """The serving techniques, measured: (a) memory and time of naive vs blockwise attention, (b) KV memory of a
    ragged workload, paged vs contiguous preallocation, (c) continuous vs static batching, (d) speculative
    decoding on SmolLM2, (e) decode tokens/s vs batch size on SmolLM2."""
    result = dict(machine=_machine())
    rng = np.random.default_rng(0)
    # (a) attention that never holds the T x T scores
    rows = []
    for T in ((256, 512) if quick else (1024, 2048, 4096, 8192)):
        q, k, v = (rng.standard_normal((1, 1, T, 64), dtype=np.float32) for _ in range(3))
        naive = functools.partial(scaled_dot_product_attention, q, k, v, mask=causal_mask(T))
        blockwise = functools.partial(blockwise_attention, q, k, v, causal_mask(T), 256, 256)
        _, naive_peak = _peak_bytes(naive)
        _, block_peak = _peak_bytes(blockwise)
        row = dict(T=T, naive_peak_bytes=naive_peak, blockwise_peak_bytes=block_peak)
        if T in (512, 2048):
            row["naive_s"], row["blockwise_s"] = best_time(naive, 3), best_time(blockwise, 3)
        rows.append(row)
        times = (f"; time naive {1e3 * row['naive_s']:.0f} ms, blockwise {1e3 * row['blockwise_s']:.0f} ms "
                 f"({row['blockwise_s'] / row['naive_s']:.2f}x)") if "naive_s" in row else ""
        print_fn(f"(a) attention T={T:5d}, causal, d=64: peak memory naive {naive_peak / 2**20:7.1f} MiB, "
                 f"blockwise (256 x 256 tiles) {block_peak / 2**20:6.1f} MiB ({block_peak / naive_peak:.1%}){times}")
    result["attention"] = rows
    model = load("smollm2")
    result["model"] = repr(model)
    # a ragged workload: prompts of 8-64 tokens, answers of 4-48 tokens
    n_requests = 6 if quick else 16
    work = random_workload(np.random.default_rng(1), n_requests, model.config.vocab_size,
                           output_range=(4, 16 if quick else 48))
    # (c) continuous batching on the paged cache ...
    sim = simulate(model, work, max_batch=8)
    produced, cont_s = sim["tokens"], sim["seconds"]
    # ... vs static batches of 8 run until their longest request finishes
    t0 = time.perf_counter()
    for i in range(0, n_requests, 8):
        batch = work[i:i + 8]
        greedy(LMSession(model, [p for p, _ in batch]), max(n for _, n in batch))
    static_s = time.perf_counter() - t0
    result["batching"] = dict(requests=n_requests, tokens=produced, continuous_s=cont_s, static_s=static_s,
                              continuous_tokens_per_s=produced / cont_s, static_tokens_per_s=produced / static_s,
                              latency_p50_s=sim["latency_s"][50], latency_p90_s=sim["latency_s"][90],
                              steps=sim["steps"])
    print_fn(f"(c) {n_requests} requests, {produced} tokens: continuous batching {produced / cont_s:.1f} tokens/s "
             f"({sim['steps']} steps; latency p50 {sim['latency_s'][50]:.2f} s, p90 {sim['latency_s'][90]:.2f} s), "
             f"static batches of 8 {produced / static_s:.1f} tokens/s: {static_s / cont_s:.2f}x")
    # (b) KV memory at the busiest step: paged blocks vs contiguous slots reserved for the longest request
    server = sim["server"]
    running, blocks, tokens = max(server.occupancy, key=lambda o: o[1])
    token_bytes = sim["block_bytes"] // server.pool.block_size
    paged_bytes, held = blocks * sim["block_bytes"], tokens * token_bytes
    contiguous = running * (max(len(p) + n for p, n in work)) * token_bytes
    result["kv_memory"] = dict(paged_bytes=paged_bytes, contiguous_reserved_bytes=contiguous, held_bytes=held,
                               block_size=server.pool.block_size, running=running, tokens=tokens)
    print_fn(f"(b) KV memory at the busiest step ({running} requests, {tokens} tokens cached, {held / 2**20:.1f} "
             f"MiB): paged {paged_bytes / 2**20:.1f} MiB in {blocks} blocks of {server.pool.block_size} tokens "
             f"({1 - held / paged_bytes:.0%} unused); contiguous slots sized for the longest request "
             f"{contiguous / 2**20:.1f} MiB ({1 - held / contiguous:.0%} unused)")
    # (d) speculative decoding
    copy = ("The cat sat on the mat. The dog sat on the log. The cat and the dog sat together on the mat and "
            "the log.")
    prompts = ["List the planets of the solar system in order.", "Write a Python function that adds two numbers.",
               f"Repeat this text exactly: {copy}"]
    n_new = 16 if quick else 48
    spec = []
    for text in prompts:
        ids = model.chat_ids([{"role": "user", "content": text}])
        t0 = time.perf_counter()
        plain = model.generate(ids, n_new)  # to the end of the answer (<|im_end|>) or n_new tokens
        plain_s = time.perf_counter() - t0
        for name, make in (("early exit, 10 of 30 blocks", lambda: ModelDraft(early_exit(model, 10))),
                           ("prompt lookup", lambda: PromptLookup(model.config.vocab_size))):
            t0 = time.perf_counter()
            out, stats = speculative_generate(model, make(), ids, n_new, gamma=4, eos_id=model.eos_id)
            dt = time.perf_counter() - t0
            assert out == plain  # greedy speculative decoding is exact
            c = 10 / 30 if name.startswith("early") else 0.0
            spec.append(dict(prompt=text, draft=name, acceptance=stats.acceptance_rate,
                             tokens_per_call=stats.tokens_per_call, speedup=plain_s / dt,
                             predicted_speedup=expected_speedup(stats.acceptance_rate, 4, c)))
            print_fn(f"(d) {text[:30]!r:34} {name:28} acceptance {stats.acceptance_rate:4.0%}, "
                     f"{stats.tokens_per_call:.2f} tokens per target pass, speed-up {plain_s / dt:.2f}x "
                     f"(predicted {spec[-1]['predicted_speedup']:.2f}x)")
    result["speculative"] = spec
    # (e) decode throughput vs batch size
    batch_rows = []
    prompt = model.tokenize("Once upon a time")
    for B in ((1, 4) if quick else (1, 4, 16, 64)):
        session = LMSession(model, [prompt] * B)
        t0 = time.perf_counter()
        greedy(session, 16)
        dt = time.perf_counter() - t0
        batch_rows.append(dict(batch=B, tokens_per_s=B * 16 / dt, step_ms=1e3 * dt / 16))
        print_fn(f"(e) batch {B:3d}: {B * 16 / dt:7.1f} tokens/s ({1e3 * dt / 16:.0f} ms a step)")
    result["batch_sizes"] = batch_rows
    return result
