"""``bench llm``: SmolLM2-135M-Instruct's load time, greedy decoding and prefill, in NumPy and in transformers,
against the memory-bandwidth roofline of the cost model (``--backend``: on another library's arrays too)."""

from __future__ import annotations

import os
import time

import numpy as np

from ...core.backend import to_backend
from ...decoding.sessions import LMSession
from ...efficient import cost_model as cm
from ...efficient.cost_model import best_time
from ...pretrained.llama import LlamaConfig, LlamaModel, init_llama_params, smollm2_path
from ...pretrained.registry import load
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


def _ratio(r):
    return None if r["transformers_s"] is None else f"{r['numpy_tokens_per_s'] / r['transformers_tokens_per_s']:.2f}x"


COLUMNS = [Column("greedy decode", lambda r: f"{r['new_tokens']:>4} new tokens", 22, align="<"),
           Column("numpy tok/s", "numpy_tokens_per_s", 12, ".1f"),
           Column("transformers", "transformers_tokens_per_s", 13, ".1f"), Column("numpy/them", _ratio, 11),
           Column("% roofline", lambda r: f"{100 * r['fraction_of_roofline']:.0f}%", 11)]
BACKEND_COLUMNS = [Column("greedy decode", lambda r: f"{r['new_tokens']:>4} new tokens", 22, align="<"),
                   Column("tok/s", "tokens_per_s", 12, ".1f"),
                   Column("% roofline", lambda r: f"{100 * r['fraction_of_roofline']:.0f}%", 11)]


def bench_llm(quick=False, with_torch=True, backend="numpy", random_weights=False, print_fn=print):
    """SmolLM2-135M-Instruct: load time, greedy decoding tokens/s (64 and 256 new tokens after a chat prompt),
    prefill time of a 512-token prompt, in NumPy and in transformers (float32, CPU, same threads), and decoding's
    fraction of the memory-bandwidth roofline.  ``backend`` "cupy" or "torch": the same transformer_np functions
    on that library's arrays too, with the roofline of its device's copy bandwidth.  ``random_weights``: SmolLM2's
    shape with random weights (no GGUF file needed; no transformers comparison)."""
    if backend != "numpy":
        to_backend({}, backend)  # a library that is not installed fails now, not after the NumPy runs
    model, load_s, prompt, long_prompt = _model(quick, random_weights)
    lengths = (8, 16) if quick else (64, 256)
    bandwidth = cm.measure_copy_bandwidth(2**24 if quick else 2**28)
    ours = _times(model, prompt, long_prompt, lengths, quick)
    theirs = _hf_times(prompt, long_prompt, lengths, quick) if with_torch and not random_weights else {}
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
    how = "made (random weights)" if random_weights else "loaded (read + dequantize)"
    print_fn(f"{model!r}: {how} in {load_s:.2f} s; weights {result['weight_bytes'] / 1e6:.0f} "
             f"MB float32; copy bandwidth {bandwidth / 1e9:.1f} GB/s   ({result['machine']['summary']})")
    print_table(rows, COLUMNS, print_fn)
    them = f"{result['prefill_transformers_s']:.3f} s" if result["prefill_transformers_s"] else "-"
    print_fn(f"prefill of {len(long_prompt)} tokens: numpy {ours['prefill']:.3f} s, transformers {them}")
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
