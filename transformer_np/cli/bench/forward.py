"""``bench forward``: one forward pass of the paper's encoder-decoder and of a GPT-2-shaped encoder, in NumPy, in
torch eager on identical weights, in the picoGPT-style peer, and (``--backend``) on another library's arrays;
``--breakdown``: where one encoder layer's time goes, and our float32 erf against SciPy's."""

from __future__ import annotations

import functools

import numpy as np

from ...core.attention import project_kv, scaled_dot_product_attention, split_heads
from ...core.backend import erf, to_backend
from ...core.nn import gelu, layer_norm, linear, softmax
from ...efficient import cost_model as cm
from ...efficient.cost_model import best_time
from ...interop import TransformerEncoderLayer, to_torch
from ...model.config import TransformerConfig
from ...model.models import Transformer
from ...model.params import init_params
from ...model.stacks import encoder
from ...teaching import picogpt_style
from .table import Column, machine, peak_rss_mb, print_table


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


def workload_flops(cfg, B, S, T, encoder_only):
    """The cost model's FLOPs of one workload: the encoder stack alone, or the whole encoder-decoder."""
    if encoder_only:
        return cm.forward_flops(cm.ModelShape.from_config(cfg), B, S, logits="none")
    return cm.encoder_decoder_flops(cfg, B, S, T)


def measure(quick=False, repeat=3, with_torch=True, backend="numpy", print_fn=print):
    """Time each workload in NumPy, in torch eager on identical weights (when installed), and — with
    ``backend`` "cupy" or "torch" — the same transformer_np functions running on that library's arrays."""
    peak = cm.measure_matmul_peak(512 if quick else 2048, repeat) / 1e9
    rows = []
    torch = None
    if with_torch:
        try:
            import torch
        except ImportError:
            print_fn("torch is not installed: NumPy timings only")
    for name, cfg, B, S, T, encoder_only in workloads(quick):
        rng = np.random.default_rng(0)
        flops = workload_flops(cfg, B, S, T, encoder_only)
        if encoder_only:
            params = init_params(cfg.replace(vocab_size=1), 0)["encoder"]  # no embedding: bench the stack
            x = rng.standard_normal((B, S, cfg.d_model), dtype=np.float32)
            np_fn = functools.partial(encoder, x, params, cfg)
            torch_fn = _torch_encoder(torch, params, cfg, x) if torch else None
            on_backend = (functools.partial(encoder, to_backend(x, backend), to_backend(params, backend), cfg)
                          if backend != "numpy" else None)
        else:
            model = Transformer.from_config(cfg, seed=0)
            src, tgt = rng.integers(0, cfg.vocab_size, (B, S)), rng.integers(0, cfg.vocab_size, (B, T))
            np_fn = functools.partial(model, src, tgt)
            torch_fn = _torch_model(torch, model, src, tgt) if torch else None
            on_backend = (functools.partial(to_backend(model, backend), to_backend(src, backend),
                                            to_backend(tgt, backend)) if backend != "numpy" else None)
        peer_fn = functools.partial(picogpt_style.encoder, x, params, cfg) if encoder_only and cfg.norm_first else None
        memory = {k: peak_rss_mb(fn) for k, fn in (("numpy", np_fn), ("torch", torch_fn), ("picogpt", peer_fn))
                  if fn}
        np_time = best_time(np_fn, repeat)
        torch_time = best_time(torch_fn, repeat) if torch_fn else None
        peer_time = best_time(peer_fn, repeat) if peer_fn else None
        backend_time = best_time(on_backend, repeat, backend) if on_backend else None
        gflops = flops / np_time / 1e9
        rows.append(dict(workload=name, gflop=flops / 1e9, numpy_s=np_time, torch_s=torch_time,
                         numpy_over_torch=(np_time / torch_time) if torch_time else None,
                         numpy_gflops=gflops, fraction_of_matmul_peak=gflops / peak,
                         picogpt_s=peer_time, speedup_over_picogpt=(peer_time / np_time) if peer_time else None,
                         peak_rss_mb=memory, backend=backend, backend_s=backend_time,
                         backend_tflops=(flops / backend_time / 1e12) if backend_time else None))
    result = dict(machine=machine(), matmul_peak_gflops=peak, rows=rows)
    if backend != "numpy":
        result["backend"] = _backend_peaks(rows, backend, quick)
    return result


def _ms(key):
    return lambda r: None if r[key] is None else 1e3 * r[key]


COLUMNS = [Column("workload", "workload", 62, align="<"), Column("GFLOP", "gflop", 7, ".2f"),
           Column("numpy ms", _ms("numpy_s"), 9, ".1f"), Column("torch ms", _ms("torch_s"), 9, ".1f"),
           Column("np/torch", "numpy_over_torch", 8, ".2f"), Column("GFLOP/s", "numpy_gflops", 8, ".1f"),
           Column("% peak", lambda r: f"{100 * r['fraction_of_matmul_peak']:.0f}%", 7)]


def report(result, print_fn=print):
    rows = result["rows"]
    print_fn(f"float32 np.matmul peak: {result['matmul_peak_gflops']:.1f} GFLOP/s   ({result['machine']['summary']})")
    backend = rows[0]["backend"]
    extra = [Column(f"on {backend} ms", _ms("backend_s"), 12, ".2f"), Column("TFLOP/s", "backend_tflops", 8, ".2f")]
    print_table(rows, COLUMNS + (extra if backend != "numpy" else []), print_fn)
    for r in rows:
        if r["picogpt_s"]:
            print_fn(f"  picoGPT-style NumPy (heads as a list, tanh GELU) on the same weights: "
                     f"{1e3 * r['picogpt_s']:.1f} ms; ours is {r['speedup_over_picogpt']:.2f}x faster")
        mem = ", ".join(f"{k} {v:.0f} MB" for k, v in r["peak_rss_mb"].items())
        print_fn(f"  peak memory of one forward above its inputs and weights (RSS high-water mark): {mem}")
    if "backend" in result:
        b = result["backend"]
        sheet = b["datasheet_tflops"]
        print_fn(f"on {backend} ({b['device']}): matrix-product peak {b['matmul_peak_tflops']:.1f} TFLOP/s measured"
                 + (f", {sheet} TFLOP/s on the datasheet (dense)" if sheet else ""))
        for r in rows:
            print_fn(f"  {r['workload']}: {r['backend_tflops']:.2f} TFLOP/s = "
                     f"{100 * r['backend_fraction_of_matmul_peak']:.0f}% of the measured peak"
                     + (f", {100 * r['backend_fraction_of_datasheet']:.0f}% of the datasheet's" if sheet else ""))


def bench_forward(quick=False, repeat=3, with_torch=True, backend="numpy", print_fn=print):
    result = measure(quick, repeat, with_torch, backend, print_fn)
    report(result, print_fn)
    return result


def _backend_peaks(rows, backend, quick):
    """The backend's measured matrix-product peak (and its datasheet peak, for a GPU in the table), and each
    workload's fraction of both, stored in the rows."""
    device = cm.device_name(backend)
    peak = cm.measure_matmul_peak(512 if quick else 8192 if backend == "cupy" else 2048, backend=backend) / 1e12
    sheet = cm.datasheet_tflops(device)
    for r in rows:
        r["backend_fraction_of_matmul_peak"] = r["backend_tflops"] / peak
        r["backend_fraction_of_datasheet"] = r["backend_tflops"] / sheet if sheet else None
    return dict(device=device, matmul_peak_tflops=peak, datasheet_tflops=sheet)


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
    result = {label: best_time(fn, repeat) * cfg.n_encoder_layers for label, fn in parts.items()}
    print_fn(f"one layer of '{name}', x {cfg.n_encoder_layers} layers:")
    print_table([dict(part=k, ms=1e3 * t) for k, t in result.items()],
                [Column("  part", lambda r: "  " + r["part"], 52, align="<"), Column("ms", "ms", 8, ".1f")], print_fn)
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
