"""``bench serve``: the serving techniques measured — (a) memory and time of naive against blockwise attention,
(b) KV memory of a ragged workload, paged against contiguous slots, (c) continuous against static batching,
(d) speculative decoding on SmolLM2, (e) decode tokens/s against the batch size on SmolLM2.  Each part measures
its rows, then prints them."""

from __future__ import annotations

import functools
import time

import numpy as np

from ...core.attention import scaled_dot_product_attention
from ...core.masks import causal_mask
from ...decoding.search import greedy
from ...decoding.sessions import LMSession
from ...efficient.blockwise import blockwise_attention
from ...efficient.cost_model import best_time
from ...efficient.serve import random_workload, simulate
from ...efficient.speculative import ModelDraft, PromptLookup, early_exit, expected_speedup, speculative_generate
from ..llm import load_llm
from .table import Column, machine, peak_traced_bytes, print_table

MiB = 2**20


def attention_memory(quick, rng):
    """(a) Peak memory of causal attention over T positions (d = 64): naive (the T × T scores) against blockwise
    (256 × 256 tiles); times at two lengths."""
    rows = []
    for T in ((256, 512) if quick else (1024, 2048, 4096, 8192)):
        q, k, v = (rng.standard_normal((1, 1, T, 64), dtype=np.float32) for _ in range(3))
        naive = functools.partial(scaled_dot_product_attention, q, k, v, mask=causal_mask(T))
        blockwise = functools.partial(blockwise_attention, q, k, v, causal_mask(T), 256, 256)
        row = dict(T=T, naive_peak_bytes=peak_traced_bytes(naive)[1],
                   blockwise_peak_bytes=peak_traced_bytes(blockwise)[1])
        if T in (512, 2048):
            row["naive_s"], row["blockwise_s"] = best_time(naive, 3), best_time(blockwise, 3)
        rows.append(row)
    return rows


def _ms(key):
    return lambda r: None if key not in r else 1e3 * r[key]


ATTENTION_COLUMNS = [
    Column("(a) causal T", "T", 12), Column("naive MiB", lambda r: r["naive_peak_bytes"] / MiB, 10, ".1f"),
    Column("blockwise MiB", lambda r: r["blockwise_peak_bytes"] / MiB, 14, ".1f"),
    Column("ratio", lambda r: f"{r['blockwise_peak_bytes'] / r['naive_peak_bytes']:.1%}", 7),
    Column("naive ms", _ms("naive_s"), 9, ".0f"), Column("blockwise ms", _ms("blockwise_s"), 13, ".0f")]


def batching(model, work):
    """(c) Continuous batching on the paged cache against static batches of 8 run until their longest request
    finishes; returns the row and the simulation (its server's occupancy gives (b))."""
    sim = simulate(model, work, max_batch=8)
    produced, cont_s = sim["tokens"], sim["seconds"]
    t0 = time.perf_counter()
    for i in range(0, len(work), 8):
        batch = work[i:i + 8]
        greedy(LMSession(model, [p for p, _ in batch]), max(n for _, n in batch))
    static_s = time.perf_counter() - t0
    row = dict(requests=len(work), tokens=produced, continuous_s=cont_s, static_s=static_s,
               continuous_tokens_per_s=produced / cont_s, static_tokens_per_s=produced / static_s,
               latency_p50_s=sim["latency_s"][50], latency_p90_s=sim["latency_s"][90], steps=sim["steps"])
    return row, sim


def kv_memory(sim, work):
    """(b) KV memory at the busiest step of the simulation: paged blocks against contiguous slots reserved for
    the longest request."""
    server = sim["server"]
    running, blocks, tokens = max(server.occupancy, key=lambda o: o[1])
    token_bytes = sim["block_bytes"] // server.pool.block_size
    return dict(paged_bytes=blocks * sim["block_bytes"], held_bytes=tokens * token_bytes,
                contiguous_reserved_bytes=running * max(len(p) + n for p, n in work) * token_bytes,
                block_size=server.pool.block_size, running=running, tokens=tokens)


COPY = "The cat sat on the mat. The dog sat on the log. The cat and the dog sat together on the mat and the log."
PROMPTS = ["List the planets of the solar system in order.", "Write a Python function that adds two numbers.",
           f"Repeat this text exactly: {COPY}"]


def speculative(model, n_new):
    """(d) Speculative decoding (γ = 4) with two drafts against plain greedy decoding, on three chat prompts;
    each output is checked equal to greedy's."""
    rows = []
    for text in PROMPTS:
        ids = model.chat_ids([{"role": "user", "content": text}])
        t0 = time.perf_counter()
        plain = model.generate(ids, n_new)  # to the end of the answer (<|im_end|>) or n_new tokens
        plain_s = time.perf_counter() - t0
        for name, make, cost in (("early exit, 10 of 30 blocks", lambda: ModelDraft(early_exit(model, 10)), 10 / 30),
                                 ("prompt lookup", lambda: PromptLookup(model.config.vocab_size), 0.0)):
            t0 = time.perf_counter()
            out, stats = speculative_generate(model, make(), ids, n_new, gamma=4, eos_id=model.eos_id)
            dt = time.perf_counter() - t0
            assert out == plain  # greedy speculative decoding is exact
            rows.append(dict(prompt=text, draft=name, acceptance=stats.acceptance_rate,
                             tokens_per_call=stats.tokens_per_call, speedup=plain_s / dt,
                             predicted_speedup=expected_speedup(stats.acceptance_rate, 4, cost)))
    return rows


SPECULATIVE_COLUMNS = [Column("(d) prompt", lambda r: repr(r["prompt"][:30]), 34, align="<"),
                       Column("draft", "draft", 28, align="<"), Column("acceptance", "acceptance", 10, ".0%"),
                       Column("tokens/pass", "tokens_per_call", 11, ".2f"),
                       Column("speed-up", lambda r: f"{r['speedup']:.2f}x", 9),
                       Column("predicted", lambda r: f"{r['predicted_speedup']:.2f}x", 9)]


def batch_sizes(model, quick):
    """(e) Tokens/s of 16 greedy steps at each batch size."""
    rows = []
    prompt = model.tokenize("Once upon a time")
    for B in ((1, 4) if quick else (1, 4, 16, 64)):
        session = LMSession(model, [prompt] * B)
        t0 = time.perf_counter()
        greedy(session, 16)
        dt = time.perf_counter() - t0
        rows.append(dict(batch=B, tokens_per_s=B * 16 / dt, step_ms=1e3 * dt / 16))
    return rows


BATCH_COLUMNS = [Column("(e) batch", "batch", 9), Column("tokens/s", "tokens_per_s", 9, ".1f"),
                 Column("ms a step", "step_ms", 10, ".0f")]


def bench_serve(quick=False, print_fn=print):
    result = dict(machine=machine())
    result["attention"] = attention_memory(quick, np.random.default_rng(0))
    print_table(result["attention"], ATTENTION_COLUMNS, print_fn)
    model = load_llm("smollm2")
    result["model"] = repr(model)
    # a ragged workload: prompts of 8-64 tokens, answers of 4-48 tokens
    work = random_workload(np.random.default_rng(1), 6 if quick else 16, model.config.vocab_size,
                           output_range=(4, 16 if quick else 48))
    b, sim = batching(model, work)
    result["batching"] = b
    print_fn(f"(c) {b['requests']} requests, {b['tokens']} tokens: continuous batching "
             f"{b['continuous_tokens_per_s']:.1f} tokens/s ({b['steps']} steps; latency p50 {b['latency_p50_s']:.2f} s,"
             f" p90 {b['latency_p90_s']:.2f} s), static batches of 8 {b['static_tokens_per_s']:.1f} tokens/s: "
             f"{b['static_s'] / b['continuous_s']:.2f}x")
    m = result["kv_memory"] = kv_memory(sim, work)
    paged, held, contiguous = m["paged_bytes"], m["held_bytes"], m["contiguous_reserved_bytes"]
    print_fn(f"(b) KV memory at the busiest step ({m['running']} requests, {m['tokens']} tokens cached, "
             f"{held / MiB:.1f} MiB): paged {paged / MiB:.1f} MiB in blocks of {m['block_size']} tokens "
             f"({1 - held / paged:.0%} unused); contiguous slots sized for the longest request "
             f"{contiguous / MiB:.1f} MiB ({1 - held / contiguous:.0%} unused)")
    result["speculative"] = speculative(model, 16 if quick else 48)
    print_table(result["speculative"], SPECULATIVE_COLUMNS, print_fn)
    result["batch_sizes"] = batch_sizes(model, quick)
    print_table(result["batch_sizes"], BATCH_COLUMNS, print_fn)
    return result
