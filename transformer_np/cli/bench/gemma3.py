"""``bench llm --model gemma3``: Gemma 3 270M from its Q4_K_M file — load time, greedy decoding and prefill in
NumPy and in transformers on the same file; then what its sliding-window layers buy at a long context: the KV
cache's bytes against context length (window caches against every layer global), and decoding after an N-token
context with window caches, full caches, and every layer made global."""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from ...decoding.cache import contiguous_cache
from ...decoding.search import greedy
from ...decoding.sessions import LMSession
from ...efficient.cost_model import best_time
from ...pretrained.gemma3 import gemma3_path
from ...pretrained.registry import load
from .llm import hf_times
from .table import Column, machine, print_table

PROMPT = "The history of the sea begins"
CONTEXTS = (512, 1024, 2048, 4096, 8192, 32768)


def _decode_times(model, prompt, lengths, make_cache=None):
    """Seconds of greedy decoding of each of ``lengths`` new tokens after ``prompt`` (prefill included, as bench
    llm times SmolLM2), after a warm-up."""
    greedy(LMSession(model, [prompt], make_cache=make_cache), 2)
    times = {}
    for n in lengths:
        t0 = time.perf_counter()
        out = greedy(LMSession(model, [prompt], make_cache=make_cache), n)[0]
        times[n] = time.perf_counter() - t0
        assert len(out) == n
    return times


def _times(model, prompt, long_prompt, lengths, quick):
    """_decode_times, and the prefill of ``long_prompt`` (best of 3; quick 1) under "prefill"."""
    times = _decode_times(model, prompt, lengths)
    times["prefill"] = best_time(lambda: LMSession(model, [long_prompt]), 1 if quick else 3)
    return times


def _hf_times(prompt, long_prompt, lengths, quick):
    """The same workloads in transformers' Gemma3ForCausalLM loaded from the same GGUF file (float32, CPU)."""
    return hf_times(gemma3_path(), prompt, long_prompt, lengths, quick, pad_token_id=0, warm_up=True)


def bench_context(model, ids, new_tokens, print_fn=print):
    """After a ``len(ids)``-token context: its prefill's seconds, greedy decoding tokens/s over ``new_tokens`` and
    the KV cache's bytes (measured: the session's cache) with window caches (the sliding layers keep W − 1
    positions), with full caches (every layer keeps everything; the sliding layers still read only their window),
    and with every layer global (the same weights with full_every=1: what attention over the whole context costs —
    a different model, timed, not a correct one)."""
    rows = []
    every_global = model.with_params(model.params, dataclasses.replace(model.config, full_every=1))
    for name, m, make_cache in (("window caches", model, None), ("full caches", model, contiguous_cache),
                                ("every layer global", every_global, None)):
        t0 = time.perf_counter()
        session = LMSession(m, [ids], make_cache=make_cache)
        prefill_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        greedy(session, new_tokens)
        decode_s = time.perf_counter() - t0
        rows.append(dict(cache=name, context=len(ids), prefill_s=prefill_s, decode_tokens_per_s=new_tokens / decode_s,
                         kv_bytes=session.cache_bytes(),
                         kv_bytes_formula=m.config.kv_cache_bytes(session.length, session.cache[0].k.itemsize)))
        del session
    for row in rows:
        row["speedup"] = row["decode_tokens_per_s"] / rows[-1]["decode_tokens_per_s"]
    print_fn(f"decoding {new_tokens} tokens after a {len(ids)}-token context (the KV cache measured at its end):")
    print_table(rows, CONTEXT_COLUMNS, print_fn)
    return rows


CONTEXT_COLUMNS = [Column("KV cache", "cache", 20, align="<"), Column("prefill s", "prefill_s", 10, ".1f"),
                   Column("decode tok/s", "decode_tokens_per_s", 13, ".2f"),
                   Column("vs global", lambda r: f"{r['speedup']:.2f}x", 10),
                   Column("KV MB", lambda r: f"{r['kv_bytes'] / 1e6:.1f}", 8)]
KV_COLUMNS = [Column("context", "context", 8),
              Column("window caches MB", lambda r: f"{r['window_bytes'] / 1e6:.1f}", 17),
              Column("every layer global MB", lambda r: f"{r['global_bytes'] / 1e6:.1f}", 22),
              Column("ratio", lambda r: f"{r['window_bytes'] / r['global_bytes']:.2f}x", 7)]
DECODE_COLUMNS = [Column("greedy decode", lambda r: f"{r['new_tokens']:>4} new tokens", 22, align="<"),
                  Column("numpy tok/s", "numpy_tokens_per_s", 12, ".1f"),
                  Column("f32 embedding", "numpy_float32_embedding_tokens_per_s", 14, ".1f"),
                  Column("transformers", "transformers_tokens_per_s", 13, ".1f"),
                  Column("numpy/them", lambda r: None if r["transformers_tokens_per_s"] is None
                         else f"{r['numpy_tokens_per_s'] / r['transformers_tokens_per_s']:.2f}x", 11)]


def bench_gemma3(quick=False, with_torch=True, context=None, print_fn=print):
    """Gemma 3 270M: load seconds, greedy decoding tokens/s (64 and 256 new tokens; quick 2 and 4: a smoke test) and
    the prefill of a 512-token prompt (quick 32) in NumPy — the embedding (the output layer) kept as the file's Q8_0
    blocks, and dequantized to float32 — and in transformers (float32, CPU); the KV cache's bytes against context
    length; decoding after a ``context``-token context (default 4,096, quick 1,024; 0: skipped) with
    window caches, full caches and every layer global (:func:`bench_context`; quick: 2 new tokens)."""
    t0 = time.perf_counter()
    model = load("gemma3")
    load_s = time.perf_counter() - t0
    cfg = model.config
    prompt = model.prompt_ids(PROMPT)
    words = model.prompt_ids(" ".join(["the quick brown fox jumps over the lazy dog"] * 460))
    long_prompt = words[: 32 if quick else 512]
    lengths = (2, 4) if quick else (64, 256)
    ours = _times(model, prompt, long_prompt, lengths, quick)
    # the output layer a plain float32 product: memory for speed
    wide_times = _times(load("gemma3", embedding="float32"), prompt, long_prompt, lengths, quick)
    theirs = _hf_times(prompt, long_prompt, lengths, quick) if with_torch else {}
    rows = [dict(new_tokens=n, numpy_s=ours[n], numpy_tokens_per_s=n / ours[n],
                 numpy_float32_embedding_tokens_per_s=n / wide_times[n], transformers_s=theirs.get(n),
                 transformers_tokens_per_s=n / theirs[n] if n in theirs else None) for n in lengths]
    every_global = dataclasses.replace(cfg, full_every=1)
    kv = [dict(context=n, window_bytes=cfg.kv_cache_bytes(n), global_bytes=every_global.kv_cache_bytes(n))
          for n in CONTEXTS]
    result = dict(machine=machine(), model=repr(model), load_s=load_s, transformers_load_s=theirs.get("load"),
                  prompt_tokens=len(prompt), decode=rows, prefill_tokens=len(long_prompt),
                  prefill_numpy_s=ours["prefill"], prefill_numpy_float32_embedding_s=wide_times["prefill"],
                  prefill_transformers_s=theirs.get("prefill"), kv_cache=kv)
    print_fn(f"{model!r}: loaded in {load_s:.1f} s   ({result['machine']['summary']})")
    print_table(rows, DECODE_COLUMNS, print_fn)
    them = f"{theirs['prefill']:.3f} s" if "prefill" in theirs else "-"
    print_fn(f"prefill of {len(long_prompt)} tokens: numpy {ours['prefill']:.3f} s (float32 embedding "
             f"{wide_times['prefill']:.3f} s), transformers {them}")
    print_fn(f"KV cache (float32) against context: {cfg.layer_types.count('sliding')} sliding layers keep W = "
             f"{cfg.window} positions, {cfg.layer_types.count('full')} global ones all:")
    print_table(kv, KV_COLUMNS, print_fn)
    n = (1024 if quick else 4096) if context is None else context
    if n > cfg.max_len:
        raise ValueError(f"--long-prompt must be at most the model's max_len {cfg.max_len}, got {n}")
    if n:
        ids = np.resize(np.asarray(words), n).tolist()
        result["context"] = bench_context(model, ids, 2 if quick else 32, print_fn)
    return result
