"""``bench decode``: greedy generation with and without the KV cache, tokens/s, on a GPT-2-width decoder."""

from __future__ import annotations

import time

import matplotlib

from ...core.backend import to_backend
from ...decoding.search import greedy
from ...decoding.sessions import LMSession
from ...efficient.cost_model import synchronize
from ...model.config import TransformerConfig
from ...model.models import DecoderLM
from ...viz import plots
from .table import Column, header_line, machine, row_line


def decode_model(quick=False):
    """The decode benchmark's model: a GPT-2-small-width decoder (C=768, 12 heads, 4 layers, V=8192)."""
    if quick:
        return DecoderLM(TransformerConfig.lm_tiny(max_len=128), seed=0)
    cfg = TransformerConfig(d_model=768, n_heads=12, n_encoder_layers=0, n_decoder_layers=4, d_ff=3072,
                            vocab_size=8192, max_len=1040, activation="gelu", norm_first=True,
                            architecture="decoder-only")
    return DecoderLM(cfg, seed=0)


def _per_token_ms(r):
    return 1e3 * r["cache_s"] / r["tokens"]


COLUMNS = [Column("tokens", "tokens", 6), Column("cache tok/s", "cache_tokens_per_s", 12, ".1f"),
           Column("ms/token", _per_token_ms, 9, ".2f"),
           Column("cache MiB", lambda r: r["cache_bytes"] / 2**20, 10, ".1f"),
           Column("no cache tok/s", "no_cache_tokens_per_s", 15, ".1f"), Column("speed-up", "speedup", 9, ".1f")]


def bench_decode(lengths=(64, 128, 256, 512, 1024), quick=False, backend="numpy", no_cache_up_to=None,
                 plot=None, print_fn=print):
    """Greedy generation of n tokens from an 8-token prompt, with and without the KV cache: tokens/s.

    The plain path recomputes the whole forward pass at every step, so it costs O(n^2) per run: it is timed
    up to ``no_cache_up_to`` tokens (all lengths by default; "-" in the table where it is not timed)."""
    model = to_backend(decode_model(quick), backend) if backend != "numpy" else decode_model(quick)
    if quick:
        lengths = (8, 16, 32)
    prompt = [list(range(1, 9))]
    rows = []
    print_fn(header_line(COLUMNS))
    for n in lengths:
        row = dict(tokens=n)
        for use_cache in (True, False):
            if not use_cache and no_cache_up_to is not None and n > no_cache_up_to:
                continue
            session = LMSession(model, prompt, use_cache=use_cache)
            t0 = time.perf_counter()
            out = greedy(session, n)
            synchronize(backend)
            dt = time.perf_counter() - t0
            assert len(out[0]) == n
            key = "cache" if use_cache else "no_cache"
            row[f"{key}_s"], row[f"{key}_tokens_per_s"] = dt, n / dt
            if use_cache:
                row["cache_bytes"] = session.cache_bytes()
        if "no_cache_s" in row:
            row["speedup"] = row["no_cache_s"] / row["cache_s"]
        rows.append(row)
        print_fn(row_line(row, COLUMNS))  # as it is measured: the long runs take minutes
    first, last = rows[0], rows[-1]
    result = dict(machine=machine(), model=repr(model), backend=backend, prompt_tokens=8, rows=rows,
                  per_token_growth=(last["cache_s"] / last["tokens"]) / (first["cache_s"] / first["tokens"]))
    print_fn(f"with the cache, per-token time at {last['tokens']} tokens / at {first['tokens']}: "
             f"{result['per_token_growth']:.2f}x")
    if plot:
        matplotlib.use("Agg")
        plots.save(plots.decode_speed(rows, f"Greedy decoding, measured on this machine\n{model!r}"), plot)
        print_fn(f"wrote {plot}")
    return result
