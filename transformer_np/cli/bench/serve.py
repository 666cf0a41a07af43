"""``bench serve``: the serving techniques measured — (a) memory and time of naive against blockwise attention,
(b) KV memory of a ragged workload, paged against contiguous slots, (c) continuous against static batching on a
Poisson arrival workload, with its latency percentiles, (d) speculative decoding on SmolLM2, (e) decode tokens/s
against the batch size on SmolLM2, (f) time to first token with and without the prefix cache (a shared system
prompt; multi-turn conversations), (g) the time between tokens of running requests while a long prompt is
prefilled, with and without chunked prefill, (h) attention over the blocks in place against the gathered copy.
Each part measures its rows, then prints them."""

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
from ...efficient.paged import BlockPool, PagedKVCache, paged_attention
from ...efficient.serve import Arrival, poisson_workload, simulate, simulate_static
from ...efficient.speculative import ModelDraft, PromptLookup, early_exit, expected_speedup, speculative_generate
from ..llm import load_llm
from ..serve_sim import report
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
    """(c) Continuous batching on the paged cache against static batches of 8 (each started once its last request
    has arrived and run until its longest one finishes), on the same arrivals; returns the row and the simulation
    (its server's occupancy gives (b))."""
    sim = simulate(model, work, max_batch=8, chunk=256)
    static = simulate_static(model, work, 8)
    produced, cont_s = sim["tokens"], sim["seconds"]
    row = dict(requests=len(work), tokens=produced, continuous_s=cont_s, static_s=static["seconds"],
               continuous_tokens_per_s=produced / cont_s, static_tokens_per_s=static["tokens_per_s"],
               latency_p50_s=sim["latency_s"][50], latency_p90_s=sim["latency_s"][90], steps=sim["steps"],
               mean_batch=sim["mean_batch"], **{f"{name}_s": sim[f"{name}_s"] for name in ("ttft", "tpot", "tbt")})
    return row, sim


def prefix_cache(model, quick):
    """(f) Time to first token with and without the prefix cache: requests sharing a 300-token system prompt
    (arriving one a second); three-turn conversations whose every message is ~120 tokens (as long as the history
    it follows); four-turn conversations that open with a ~300-token message (a document, say) and go on with
    ~24-token ones — each turn the whole conversation so far."""
    rows = []
    for name, kw in (("shared 300-token system prompt", dict(system_prompt=300, turns=1)),
                     ("3 turns, ~120-token messages", dict(system_prompt=0, turns=3, prompt_mean=120)),
                     ("4 turns, a 300-token opening", dict(system_prompt=300, turns=4, shared_system=False))):
        n = kw["turns"] * (1 if quick else 3) if kw["turns"] > 1 else 3 if quick else 9  # whole conversations
        work = poisson_workload(np.random.default_rng(2), n, 1.0, model.config.vocab_size,
                                **{"prompt_mean": 24, "output_mean": 8, "max_output": 16, **kw})
        for cached in (False, True):
            sim = simulate(model, work, max_batch=8, n_blocks=1024, prefix_cache=cached, chunk=512)
            rows.append(dict(workload=name, prefix_cache=cached, ttft_s=sim["ttft_s"], hit_rate=sim["prefix_hit_rate"],
                             prompt_tokens=sim["server"].prompt_tokens, requests=n))
    for a, b in zip(rows[::2], rows[1::2]):
        b["ttft_ratio"] = a["ttft_s"][50] / b["ttft_s"][50]
    return rows


PREFIX_COLUMNS = [Column("(f) workload", "workload", 32, align="<"),
                  Column("prefix cache", lambda r: "on" if r["prefix_cache"] else "off", 12),
                  Column("TTFT p50 s", lambda r: r["ttft_s"][50], 11, ".3f"),
                  Column("TTFT p90 s", lambda r: r["ttft_s"][90], 11, ".3f"),
                  Column("hit rate", "hit_rate", 9, ".0%"),
                  Column("p50 ratio", lambda r: None if "ttft_ratio" not in r else f"{r['ttft_ratio']:.1f}x", 10)]


def chunked_prefill(model, quick):
    """(g) Four requests decoding when a long prompt (2,000 tokens; quick 300) arrives: the time between their
    tokens (p50, p99, max) with the prompt prefilled whole, and in chunks of a 256-token step budget."""
    V = model.config.vocab_size
    rng = np.random.default_rng(3)
    long_n = 300 if quick else 2000
    running = [Arrival(0.0, [int(t) for t in rng.integers(0, V, 16)], 24 if quick else 48) for _ in range(4)]
    work = running + [Arrival(0.5, [int(t) for t in rng.integers(0, V, long_n)], 4)]
    rows = []
    for chunk in (None, 256):
        sim = simulate(model, work, max_batch=8, n_blocks=1024, chunk=chunk)
        gaps = np.concatenate([h.gaps for h in sim["handles"][:4]])
        rows.append(dict(chunk=chunk, long_prompt=long_n, tbt_p50_s=float(np.percentile(gaps, 50)),
                         tbt_p99_s=float(np.percentile(gaps, 99)), tbt_max_s=float(gaps.max()),
                         long_ttft_s=sim["handles"][4].ttft, tokens_per_s=sim["tokens_per_s"]))
    return rows


CHUNK_COLUMNS = [Column("(g) prefill", lambda r: "whole" if r["chunk"] is None else f"chunks of {r['chunk']}", 16,
                        align="<"),
                 Column("gap p50 s", "tbt_p50_s", 10, ".3f"), Column("gap p99 s", "tbt_p99_s", 10, ".3f"),
                 Column("gap max s", "tbt_max_s", 10, ".3f"), Column("long TTFT s", "long_ttft_s", 12, ".2f")]


def in_place_attention(model, quick):
    """(h) One layer's decode attention for 8 sequences of S positions on SmolLM2's heads: over the gathered copy
    against the blocks read in place (a tile of 16 blocks at a time) — seconds and the peak of the memory it
    allocates."""
    cfg = model.config
    rows = []
    rng = np.random.default_rng(4)
    for S in ((256, 1024) if quick else (512, 2048, 8192)):
        pool = BlockPool(1, 8 * (S // 16 + 1), cfg.kv_heads, cfg.d_head)
        seqs = [pool.new_sequence() for _ in range(8)]
        for s in seqs:
            k = rng.standard_normal((1, cfg.kv_heads, S, cfg.d_head), dtype=np.float32)
            PagedKVCache(pool, [s])[0].extend(k, k)
        q = rng.standard_normal((8, cfg.n_heads, 1, cfg.d_head), dtype=np.float32)
        gather = functools.partial(_gathered_attention, q, pool, seqs, [S] * 8)
        in_place = functools.partial(paged_attention, q, pool, 0, seqs, [S] * 8)
        rows.append(dict(S=S, gather_s=best_time(gather, 3), in_place_s=best_time(in_place, 3),
                         gather_peak_bytes=peak_traced_bytes(gather)[1],
                         in_place_peak_bytes=peak_traced_bytes(in_place)[1]))
    return rows


def _gathered_attention(q, pool, seqs, lengths):
    k, v = pool.gather(0, seqs, lengths)
    return scaled_dot_product_attention(q, k, v)


IN_PLACE_COLUMNS = [Column("(h) S", "S", 7), Column("gather ms", _ms("gather_s"), 10, ".2f"),
                    Column("in place ms", _ms("in_place_s"), 12, ".2f"),
                    Column("gather MiB", lambda r: r["gather_peak_bytes"] / MiB, 11, ".1f"),
                    Column("in place MiB", lambda r: r["in_place_peak_bytes"] / MiB, 13, ".1f")]


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
    # Poisson arrivals (4 a second), prompts of ~40 tokens, answers log-normal around 24 (up to 96)
    work = poisson_workload(np.random.default_rng(1), 6 if quick else 24, 4.0, model.config.vocab_size,
                            prompt_mean=40, output_mean=8 if quick else 24, max_output=16 if quick else 96)
    b, sim = batching(model, work)
    result["batching"] = b
    print_fn(f"(c) {b['requests']} requests arriving 4 a second, {b['tokens']} tokens: continuous batching "
             f"{b['continuous_tokens_per_s']:.1f} tokens/s ({b['steps']} steps, mean batch {b['mean_batch']:.1f}), "
             f"static batches of 8 {b['static_tokens_per_s']:.1f} tokens/s: "
             f"{b['continuous_tokens_per_s'] / b['static_tokens_per_s']:.2f}x")
    for line in report(sim, 8)[1:5]:
        print_fn(f"    {line}")
    m = result["kv_memory"] = kv_memory(sim, [(a.prompt, a.max_new_tokens) for a in work])
    paged, held, contiguous = m["paged_bytes"], m["held_bytes"], m["contiguous_reserved_bytes"]
    print_fn(f"(b) KV memory at the busiest step ({m['running']} requests, {m['tokens']} tokens cached, "
             f"{held / MiB:.1f} MiB): paged {paged / MiB:.1f} MiB in blocks of {m['block_size']} tokens "
             f"({1 - held / paged:.0%} unused); contiguous slots sized for the longest request "
             f"{contiguous / MiB:.1f} MiB ({1 - held / contiguous:.0%} unused)")
    result["speculative"] = speculative(model, 16 if quick else 48)
    print_table(result["speculative"], SPECULATIVE_COLUMNS, print_fn)
    result["batch_sizes"] = batch_sizes(model, quick)
    print_table(result["batch_sizes"], BATCH_COLUMNS, print_fn)
    result["prefix_cache"] = prefix_cache(model, quick)
    print_table(result["prefix_cache"], PREFIX_COLUMNS, print_fn)
    result["chunked_prefill"] = chunked_prefill(model, quick)
    print_table(result["chunked_prefill"], CHUNK_COLUMNS, print_fn)
    result["in_place"] = in_place_attention(model, quick)
    print_table(result["in_place"], IN_PLACE_COLUMNS, print_fn)
    return result
