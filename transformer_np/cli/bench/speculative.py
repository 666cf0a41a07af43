"""``bench speculative``: speculative decoding of SmolLM2 with its distilled draft head (EAGLE) on the chat prompts
the head never saw in training (efficient.draft.EVAL_PROMPTS), against plain greedy decoding in the same run: each
output checked token for token, the acceptance per draft position, tokens per target pass, the speed-up for
γ = 2 … 6, with float32 weights and with int8 (the fastest stored form, bench llm) — and where the time goes: the
head's draft steps, the target's verification passes, and what a target pass over T tokens costs against one."""

from __future__ import annotations

import time

import numpy as np

from ...decoding.cache import new_cache
from ...efficient.draft import EVAL_PROMPTS, HeadDraft, load_shipped_head
from ...efficient.speculative import (
    Draft,
    SpecStats,
    expected_speedup,
    speculative_generate,
    speculative_tree_generate,
    tokens_per_pass,
)
from ...pretrained.registry import load
from ..options import weight_options
from .table import Column, machine, print_table

FORMATS = ("float32", "int8")


class TimedDraft(Draft):
    """A draft whose proposals are timed (the seconds spent drafting, summed): the rest of a speculative run is
    the target's verification passes."""

    def __init__(self, draft):
        self.draft, self.seconds = draft, 0.0
        self.needs_features = draft.needs_features

    def propose(self, tokens, gamma, choose):
        t0 = time.perf_counter()
        try:
            return self.draft.propose(tokens, gamma, choose)
        finally:
            self.seconds += time.perf_counter() - t0

    def accept(self, length, features=None):
        self.draft.accept(length, features)


def pass_times(model, context, sizes, repeat=5):
    """Milliseconds of one target pass over T new tokens after ``context`` cached ones, for each T in sizes (best
    of ``repeat``): on a CPU the (T, C) × (C, ·) products grow with T — a decode step is not free to widen."""
    rng = np.random.default_rng(0)
    prompt = rng.integers(0, model.config.vocab_size, (1, context))
    out = {}
    for T in sizes:
        best = np.inf
        for _ in range(repeat):
            cache = new_cache(model.config.n_layers)
            model.step(prompt, cache=cache)
            ids = rng.integers(0, model.config.vocab_size, (1, T))
            t0 = time.perf_counter()
            model.step(ids, cache=cache)
            best = min(best, time.perf_counter() - t0)
        out[T] = 1e3 * best
    return out


def run_format(model, head, prompts, gammas, n_new, tree=(2, 3)):
    """Rows for one weight format: plain greedy, then the head at each γ, then a token tree of ``tree`` = (branches,
    depth) verified in one pass; every output compared with plain's."""
    ids = [model.chat_ids([{"role": "user", "content": p}]) for p in prompts]
    model.generate(ids[0], 2)  # warm-up
    plain, plain_s = [], 0.0
    for x in ids:
        t0 = time.perf_counter()
        plain.append(model.generate(x, n_new))
        plain_s += time.perf_counter() - t0
    n_plain = sum(map(len, plain))
    rows = []
    for gamma in (*gammas, tree):
        spec_s = draft_s = 0.0
        same, calls, produced, accepted, drafted = 0, 0, 0, [], []
        for x, want in zip(ids, plain):
            t0 = time.perf_counter()
            if gamma == tree:  # the tree's proposals are not a Draft's: not timed apart
                out, stats = speculative_tree_generate(model, HeadDraft(head, model), x, n_new, *tree,
                                                       eos_id=model.eos_id)
            else:
                draft = TimedDraft(HeadDraft(head, model))
                out, stats = speculative_generate(model, draft, x, n_new, gamma, eos_id=model.eos_id)
                draft_s += draft.seconds
            spec_s += time.perf_counter() - t0
            same += out == want
            calls, produced = calls + stats.target_calls, produced + stats.produced
            accepted += stats.accepted_per_call
            drafted += stats.drafted_per_call
        if gamma == tree:
            rows.append(dict(gamma=f"tree {tree[0]}×{tree[1]}", identical=same, prompts=len(ids),
                             acceptance=sum(accepted) / max(1, sum(drafted)), alphas=[],
                             tokens_per_pass=produced / calls, predicted_tokens_per_pass=None,
                             speedup=(plain_s / n_plain) / (spec_s / produced), formula_speedup=None, c=None,
                             plain_ms_per_token=1e3 * plain_s / n_plain, spec_ms_per_token=1e3 * spec_s / produced,
                             draft_ms_per_pass=None, verify_ms_per_pass=None))
            continue
        alphas = SpecStats(accepted_per_call=accepted, drafted_per_call=drafted).acceptance_by_position(gamma)
        alpha = sum(accepted) / max(1, sum(drafted))
        c = (draft_s / max(1, sum(d > 0 for d in drafted)) / gamma) / (plain_s / n_plain)  # a draft step / a plain one
        rows.append(dict(gamma=gamma, identical=same, prompts=len(ids), acceptance=alpha, alphas=alphas,
                         tokens_per_pass=produced / calls, predicted_tokens_per_pass=tokens_per_pass(
                             [a or 0.0 for a in alphas]),
                         speedup=(plain_s / n_plain) / (spec_s / produced),
                         formula_speedup=expected_speedup(alpha, gamma, c), c=c,
                         plain_ms_per_token=1e3 * plain_s / n_plain, spec_ms_per_token=1e3 * spec_s / produced,
                         draft_ms_per_pass=1e3 * draft_s / calls, verify_ms_per_pass=1e3 * (spec_s - draft_s) / calls))
    return rows


COLUMNS = [Column("weights", "weights", 8, align="<"), Column("γ", "gamma", 10),
           Column("same", lambda r: f"{r['identical']}/{r['prompts']}", 6),
           Column("accept", "acceptance", 7, ".0%"),
           Column("α by position", lambda r: " ".join("-" if a is None else f"{a:.2f}" for a in r["alphas"]), 30,
                  align="<"),
           Column("tok/pass", "tokens_per_pass", 8, ".2f"),
           Column("from α_i", "predicted_tokens_per_pass", 8, ".2f"),
           Column("plain ms/tok", "plain_ms_per_token", 12, ".1f"),
           Column("spec ms/tok", "spec_ms_per_token", 11, ".1f"),
           Column("draft ms/pass", "draft_ms_per_pass", 13, ".1f"),
           Column("verify ms/pass", "verify_ms_per_pass", 14, ".1f"),
           Column("speed-up", lambda r: f"{r['speedup']:.2f}x", 8),
           Column("formula", lambda r: None if r["formula_speedup"] is None else f"{r['formula_speedup']:.2f}x", 7)]


def bench_speculative(quick=False, print_fn=print):
    head = load_shipped_head()
    prompts = EVAL_PROMPTS[:2] if quick else EVAL_PROMPTS
    gammas = (2, 4) if quick else (2, 3, 4, 5, 6)
    n_new = 16 if quick else 64
    result = dict(machine=machine(), head=repr(head), head_info=head.info, prompts=len(prompts), max_new_tokens=n_new,
                  rows=[], pass_ms={})
    for weights in FORMATS[:1] if quick else FORMATS:
        model = load("smollm2", **weight_options(weights))
        rows = [dict(weights=weights, **r) for r in run_format(model, head, prompts, gammas, n_new)]
        result["rows"] += rows
        print_table(rows, COLUMNS, print_fn)
        sizes = (1, 3, 5) if quick else (1, 2, 3, 4, 5, 6, 7)
        ms = result["pass_ms"][weights] = pass_times(model, 100, sizes, repeat=2 if quick else 5)
        print_fn(f"{weights}: one target pass over T tokens after 100 cached, ms: "
                 + ", ".join(f"T={T} {v:.1f} ({v / ms[1]:.2f}x)" for T, v in ms.items()))
    return result
