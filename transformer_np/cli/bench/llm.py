"""``bench llm``: SmolLM2-135M-Instruct's load time, greedy decoding and prefill, in NumPy and in transformers,
against the memory-bandwidth roofline of the cost model (``--backend``: on another library's arrays too)."""

from __future__ import annotations

import itertools
import os
import time
import tracemalloc

import numpy as np

from ...core import blockwise, tiled
from ...core.backend import to_backend
from ...core.tree import params_nbytes
from ...decoding.sessions import LMSession
from ...efficient import cost_model as cm
from ...efficient.compress import compress
from ...efficient.cost_model import best_time
from ...pretrained.llama import LlamaConfig, LlamaModel, init_llama_params, llama_logits, smollm2_path
from ...pretrained.registry import load
from ..options import weight_options
from .table import Column, machine, print_table


def decode_bytes(model, context):
    """Bytes one decode step reads (the cost model's): every weight once, the tied embedding table as the output
    layer, and the KV cache of ``context`` tokens."""
    return cm.step_bytes(cm.ModelShape.from_config(model.config), 1, 1, past=context - 1)


def _model(quick, random_weights):
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


def _times(model, prompt, long_prompt, lengths, quick, backend="numpy"):
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
    times["prefill"] = best_time(lambda: LMSession(model, [long_prompt]), 1 if quick else 3, backend)
    return times


def _hf_times(prompt, long_prompt, lengths, quick):
    """The same workloads in transformers' LlamaForCausalLM loaded from the same GGUF file (float32, CPU)."""
    return hf_times(smollm2_path(), prompt, long_prompt, lengths, quick, pad_token_id=2)


def hf_times(path, prompt, long_prompt, lengths, quick, pad_token_id, warm_up=False):
    """Seconds of greedy decoding of each of ``lengths`` new tokens after ``prompt`` and of the prefill of
    ``long_prompt`` (best of 3; quick 1) in transformers, the model loaded from the GGUF file ``path`` (float32,
    CPU; its load seconds under "load"; warm_up: a 2-token generation first).  {} without torch and transformers."""
    try:
        import torch
        from transformers import AutoModelForCausalLM
    except ImportError:
        return {}
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    hf = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()
    times = {"load": time.perf_counter() - t0}
    ids = torch.tensor([prompt])
    with torch.inference_mode():
        if warm_up:
            hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=2, do_sample=False,
                        pad_token_id=pad_token_id)
        for n in lengths:
            t0 = time.perf_counter()
            hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n,
                        do_sample=False, pad_token_id=pad_token_id)
            times[n] = time.perf_counter() - t0
        long_ids = torch.tensor([long_prompt])
        times["prefill"] = best_time(lambda: hf(long_ids, logits_to_keep=1, use_cache=True), 1 if quick else 3)
    return times


def _llama_cpp_times(prompt, long_prompt, lengths, quick):
    """The same workloads in llama.cpp (llama-cpp-python, when it is importable: it compiles llama.cpp for minutes,
    so it is never a dependency) on the same GGUF file — its own Q4_1/Q8_0 kernels, the anchor every row is read
    against — with as many threads as NumPy's BLAS uses.  {} when it is not installed."""
    try:
        import llama_cpp
    except ImportError:
        return {}
    threads = os.cpu_count() or 1
    llm = llama_cpp.Llama(model_path=str(smollm2_path()), n_ctx=2048, n_batch=512, n_threads=threads,
                          n_threads_batch=threads, verbose=False)
    times = {"version": getattr(llama_cpp, "__version__", "?"), "threads": threads}
    for n in lengths:  # greedy: the prompt's prefill, then n tokens, as _times does
        t0 = time.perf_counter()
        out = list(itertools.islice(llm.generate(prompt, temp=0.0, reset=True), n))
        times[n] = time.perf_counter() - t0
        assert len(out) == n

    def prefill():
        llm.reset()
        llm.eval(long_prompt)

    times["prefill"] = best_time(prefill, 1 if quick else 3)
    return times


def _ratio(r):
    return None if r["transformers_s"] is None else f"{r['numpy_tokens_per_s'] / r['transformers_tokens_per_s']:.2f}x"


COLUMNS = [Column("greedy decode", lambda r: f"{r['new_tokens']:>4} new tokens", 22, align="<"),
           Column("numpy tok/s", "numpy_tokens_per_s", 12, ".1f"),
           Column("transformers", "transformers_tokens_per_s", 13, ".1f"), Column("numpy/them", _ratio, 11),
           Column("% roofline", lambda r: f"{100 * r['fraction_of_roofline']:.0f}%", 11)]
BACKEND_COLUMNS = [Column("greedy decode", lambda r: f"{r['new_tokens']:>4} new tokens", 22, align="<"),
                   Column("tok/s", "tokens_per_s", 12, ".1f"),
                   Column("% roofline", lambda r: f"{100 * r['fraction_of_roofline']:.0f}%", 11)]


FORMAT_COLUMNS = [Column("weights", "weights", 14, align="<"), Column("load s", "load_s", 7, ".1f"),
                  Column("MB", lambda r: f"{r['weight_bytes'] / 1e6:.0f}", 6),
                  Column("tok/s short", "tokens_per_s_short", 12, ".1f"),
                  Column("tok/s long", "tokens_per_s_long", 11, ".1f"),
                  Column("vs float32", lambda r: f"{r['speedup']:.2f}x", 11),
                  Column("roofline tok/s", "roofline_tokens_per_s", 15, ".1f"),
                  Column("% roofline", lambda r: f"{100 * r['fraction_of_roofline']:.0f}%", 11),
                  Column("widen ns", "widen_ns_per_value", 9, ".2f"),
                  Column("prefill s", "prefill_s", 10, ".3f"),
                  Column("vs float32", lambda r: f"{r['prefill_ratio']:.2f}x", 11)]
# the stored forms `bench llm --weights` compares (q4: SmolLM2's own Q4_1/Q8_0 blocks, kept)
FORMATS = ("float32", "bfloat16", "float16", "float8_e4m3fn", "int8", "q4")
TILE_FORMATS = {"q4": "uint4"}  # the tile format each row's matrices use (q4: the file's Q4_1, nibbles and offsets)
RANDOM_FORMATS = {"bfloat16": "bfloat16", "float16": "float16", "float8_e4m3fn": "float8_e4m3fn", "int8": "int8",
                  "q4": "q4_1"}  # with random weights: the same stored forms made by compress


def _format_model(fmt, base, random_weights):
    """(model with its matrices stored as ``fmt``, seconds it took to load or convert)."""
    t0 = time.perf_counter()
    if fmt == "float32":
        return base, None
    if random_weights:
        model = base.with_params(compress(base.params, RANDOM_FORMATS[fmt], quantize_embedding=True))
    else:
        model = load("smollm2", **weight_options(fmt))
    return model, time.perf_counter() - t0


def bench_formats(base, base_load_s, float32_times, prompt, long_prompt, lengths, quick, bandwidth, formats,
                  random_weights, print_fn=print):
    """One row per stored form of the weights (``formats``): load seconds, resident weight bytes, greedy decoding
    tokens/s at both ``lengths`` and against float32 (the first row), that format's roofline — the bytes a step
    reads (every stored weight once, the KV cache) at the measured copy bandwidth — and the fraction reached, the
    nanoseconds one thread takes to widen a value of the format to float32 (float32: to copy one), and the prefill
    of ``long_prompt`` against float32's."""
    rows = []
    for fmt in formats:
        model, load_s = _format_model(fmt, base, random_weights)
        t = float32_times if fmt == "float32" else _times(model, prompt, long_prompt, lengths, quick)
        nbytes = params_nbytes(model.params)
        n = lengths[-1]
        step = nbytes + cm.kv_cache_bytes(cm.ModelShape.from_config(model.config), 1, len(prompt) + n // 2)
        row = dict(weights=fmt, load_s=base_load_s if load_s is None else load_s, weight_bytes=nbytes,
                   tokens_per_s_short=lengths[0] / t[lengths[0]], tokens_per_s_long=n / t[n],
                   roofline_tokens_per_s=bandwidth / step, prefill_s=t["prefill"],
                   widen_ns_per_value=tiled.widen_ns_per_value(TILE_FORMATS.get(fmt, fmt)))
        row["fraction_of_roofline"] = row["tokens_per_s_long"] / row["roofline_tokens_per_s"]
        rows.append(row)
        del model
    for row in rows:
        row["speedup"] = row["tokens_per_s_long"] / rows[0]["tokens_per_s_long"]
        row["prefill_ratio"] = row["prefill_s"] / rows[0]["prefill_s"]
    print_fn(f"stored weights, each product dequantizing tile by tile (core.tiled); decode of {lengths[0]} and "
             f"{lengths[-1]} new tokens, prefill of {len(long_prompt)}:")
    print_table(rows, FORMAT_COLUMNS, print_fn)
    return rows


LONG_COLUMNS = [Column("attention", "attention", 10, align="<"), Column("prefill s", "prefill_s", 10, ".2f"),
                Column("vs plain", lambda r: f"{r['time_ratio']:.2f}x", 9),
                Column("peak MB", lambda r: f"{r['peak_bytes'] / 1e6:.0f}", 8),
                Column("vs plain", lambda r: f"{r['memory_ratio']:.2f}x", 9)]


def bench_long_prompt(model, prompt_ids, tokens, print_fn=print):
    """The prefill of a ``tokens``-token prompt (``prompt_ids`` repeated) with the plain and the blockwise attention
    path: seconds (one run each, logits of the last position only) and the peak of the memory allocated during it
    (a second run under tracemalloc, which NumPy reports its arrays to: the scores, the activations, not the
    weights)."""
    ids = np.resize(np.asarray(prompt_ids), (1, tokens))
    rows = []
    for path in ("plain", "blockwise"):
        t0 = time.perf_counter()
        llama_logits(model.params, ids, model.config, last_only=True, attention=path)
        seconds = time.perf_counter() - t0
        tracemalloc.start()
        try:
            llama_logits(model.params, ids, model.config, last_only=True, attention=path)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        rows.append(dict(attention=path, tokens=tokens, prefill_s=seconds, peak_bytes=peak))
    for row in rows:
        row["time_ratio"] = row["prefill_s"] / rows[0]["prefill_s"]
        row["memory_ratio"] = row["peak_bytes"] / rows[0]["peak_bytes"]
    print_fn(f"prefill of a {tokens}-token prompt, attention plain (the T×T scores) or blockwise ({blockwise.BLOCK} × "
             f"{blockwise.BLOCK} tiles; 'auto' tiles once the scores pass {blockwise.AUTO_SCORES_BYTES / 2**20:.0f} "
             f"MiB):")
    print_table(rows, LONG_COLUMNS, print_fn)
    return rows


def bench_llm(quick=False, with_torch=True, backend="numpy", random_weights=False, print_fn=print, formats=FORMATS,
              long_prompt_tokens=None):
    """SmolLM2-135M-Instruct: load time, greedy decoding tokens/s (64 and 256 new tokens after a chat prompt),
    prefill time of a 512-token prompt, in NumPy and in transformers (float32, CPU, same threads), and decoding's
    fraction of the memory-bandwidth roofline.  ``backend`` "cupy" or "torch": the same transformer_np functions
    on that library's arrays too, with the roofline of its device's copy bandwidth.  ``random_weights``: SmolLM2's
    shape with random weights (no GGUF file needed; no transformers comparison).  ``long_prompt_tokens``: the
    prefill of a prompt this long with plain and blockwise attention (default 4,096, quick 1,024; 0: skipped)."""
    if backend != "numpy":
        to_backend({}, backend)  # a library that is not installed fails now, not after the NumPy runs
    model, load_s, prompt, long_prompt = _model(quick, random_weights)
    lengths = (8, 16) if quick else (64, 256)
    bandwidth = cm.measure_copy_bandwidth(2**24 if quick else 2**28)
    ours = _times(model, prompt, long_prompt, lengths, quick)
    theirs = _hf_times(prompt, long_prompt, lengths, quick) if with_torch and not random_weights else {}
    anchor = {} if random_weights else _llama_cpp_times(prompt, long_prompt, lengths, quick)
    rows = []
    for n in lengths:
        roofline_s = decode_bytes(model, (len(prompt) + n) // 2) / bandwidth  # per token, mid-run context
        rows.append(dict(new_tokens=n, numpy_s=ours[n], numpy_tokens_per_s=n / ours[n],
                         transformers_s=theirs.get(n), transformers_tokens_per_s=(n / theirs[n]) if n in theirs
                         else None, roofline_s_per_token=roofline_s, fraction_of_roofline=roofline_s / (ours[n] / n)))
    result = dict(machine=machine(), model=repr(model), random_weights=random_weights, load_s=load_s,
                  prompt_tokens=len(prompt), copy_bandwidth_gb_s=bandwidth / 1e9,
                  weight_bytes=decode_bytes(model, 0), decode=rows, prefill_tokens=len(long_prompt),
                  prefill_numpy_s=ours["prefill"], prefill_transformers_s=theirs.get("prefill"))
    if anchor:
        result["llama_cpp"] = dict(version=anchor["version"], threads=anchor["threads"], prefill_s=anchor["prefill"],
                                   decode=[dict(new_tokens=n, seconds=anchor[n], tokens_per_s=n / anchor[n])
                                           for n in lengths])
    how = "made (random weights)" if random_weights else "loaded (read + dequantize)"
    print_fn(f"{model!r}: {how} in {load_s:.2f} s; weights {result['weight_bytes'] / 1e6:.0f} "
             f"MB float32; copy bandwidth {bandwidth / 1e9:.1f} GB/s   ({result['machine']['summary']})")
    print_table(rows, COLUMNS, print_fn)
    them = f"{result['prefill_transformers_s']:.3f} s" if result["prefill_transformers_s"] else "-"
    print_fn(f"prefill of {len(long_prompt)} tokens: numpy {ours['prefill']:.3f} s, transformers {them}")
    if anchor:
        print_fn(f"llama.cpp {anchor['version']} on the same file ({anchor['threads']} threads): decode "
                 + ", ".join(f"{n / anchor[n]:.1f} tok/s ({n} new)" for n in lengths)
                 + f"; prefill of {len(long_prompt)} tokens {anchor['prefill']:.3f} s")
    if formats:
        result["formats"] = bench_formats(model, load_s, ours, prompt, long_prompt, lengths, quick, bandwidth,
                                          ("float32", *(f for f in formats if f != "float32")), random_weights,
                                          print_fn)
    long_n = (1024 if quick else 4096) if long_prompt_tokens is None else long_prompt_tokens
    if long_n > model.config.max_len:
        raise ValueError(f"long_prompt_tokens must be at most the model's max_len {model.config.max_len}, got {long_n}")
    if long_n:
        result["long_prompt"] = bench_long_prompt(model, long_prompt, long_n, print_fn)
    if backend != "numpy":
        result["backend"] = _on_backend(model, prompt, long_prompt, lengths, quick, backend, print_fn)
    return result


def _on_backend(model, prompt, long_prompt, lengths, quick, backend, print_fn):
    """bench_llm's workloads with the params on ``backend``; the roofline from that device's copy bandwidth."""
    moved = to_backend(model, backend)
    bandwidth = cm.measure_copy_bandwidth(2**24 if quick else 2**30 if backend == "cupy" else 2**28, backend=backend)
    times = _times(moved, prompt, long_prompt, lengths, quick, backend)
    rows = [dict(new_tokens=n, seconds=times[n], tokens_per_s=n / times[n],
                 fraction_of_roofline=decode_bytes(model, (len(prompt) + n) // 2) / bandwidth / (times[n] / n))
            for n in lengths]
    prefill_flops = cm.forward_flops(cm.ModelShape.from_config(model.config), 1, len(long_prompt), logits="last")
    out = dict(backend=backend, device=cm.device_name(backend), copy_bandwidth_gb_s=bandwidth / 1e9, decode=rows,
               prefill_s=times["prefill"], prefill_tflops=prefill_flops / times["prefill"] / 1e12)
    print_fn(f"on {backend} ({out['device']}; copy bandwidth {bandwidth / 1e9:.0f} GB/s):")
    print_table(rows, BACKEND_COLUMNS, print_fn)
    print_fn(f"prefill of {len(long_prompt)} tokens: {times['prefill'] * 1e3:.1f} ms "
             f"({out['prefill_tflops']:.2f} TFLOP/s of the cost model's FLOPs)")
    return out
