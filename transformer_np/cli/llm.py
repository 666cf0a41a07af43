"""What ``chat`` and ``generate --model`` share: the pretrained LLM loaded once per process, and one generation run
with every technique the chapters teach — stored weights (``--weights``), speculative decoding (``--speculative``),
the paged KV cache (``--paged``) — and each token's log-probabilities (``--logprobs``)."""

from __future__ import annotations

import functools
import math
import time

import numpy as np

from ..core.nn import log_softmax
from ..decoding.cache import contiguous_cache
from ..decoding.search import greedy, sample
from ..decoding.sessions import LMSession
from ..efficient.draft import HeadDraft, load_shipped_head
from ..efficient.paged import BLOCK_SIZE, LayerPools, paged_cache
from ..efficient.speculative import ModelDraft, PromptLookup, early_exit, speculative_generate
from ..model.protocol import FeatureLM
from ..pretrained.registry import load
from .options import CommandError, positive_int, weight_options

SPECULATIVE = ("head", "prompt-lookup", "early-exit")


@functools.lru_cache(maxsize=2)
def load_llm(name_or_path, weights="float32"):
    """The model ``name_or_path`` with its matrices stored as ``weights``, loaded once per process for each pair
    (a second command in the same process — a test, a notebook — reuses it; the commands never change a model)."""
    return load(name_or_path, **weight_options(weights))


def add_technique_options(parser):
    parser.add_argument("--speculative", choices=SPECULATIVE,
                        help="speculative decoding, the same tokens as plain decoding: head drafts with the head "
                             "distilled from SmolLM2 (EAGLE; --draft-head); prompt-lookup drafts what followed the "
                             "last n-gram's earlier occurrence; early-exit drafts with the model's first "
                             "--draft-layers blocks (default: off)")
    parser.add_argument("--draft-head", metavar="FILE", help="--speculative head: a head written by distill-draft "
                                                              "(default: the one shipped for SmolLM2)")
    parser.add_argument("--compare", action="store_true",
                        help="--speculative: also decode plainly, and print the speed-up and whether the tokens "
                             "are the same (greedy: they must be)")
    parser.add_argument("--gamma", type=positive_int, default=4, help="--speculative: tokens drafted per target "
                                                                      "pass (default: %(default)s)")
    parser.add_argument("--draft-layers", type=positive_int, default=10,
                        help="--speculative early-exit: the draft's blocks (default: %(default)s)")
    parser.add_argument("--paged", action="store_true",
                        help="keep the KV cache in blocks of 16 tokens from a pool (vLLM's paged cache; default: "
                             "one contiguous buffer)")


def check_technique_options(args, model=None):
    """What the options cannot do together: one 'error:' line naming them."""
    if args.speculative and args.paged:
        raise CommandError("--speculative and --paged exclude each other: speculative decoding rolls the cache back "
                           "after a rejected draft, which the paged cache does not do")
    if args.speculative and args.logprobs:
        raise CommandError("--logprobs: not with --speculative (the target's distributions are checked, not kept)")
    if (args.draft_head or args.compare) and not args.speculative:
        raise CommandError(f"{'--draft-head' if args.draft_head else '--compare'}: only with --speculative")
    if model is not None and args.speculative == "head" and not isinstance(model, FeatureLM):
        raise CommandError(f"--speculative head: drafts from a Llama-family model's features; a "
                           f"{type(model).__name__} is not one")
    if model is not None and args.speculative == "early-exit" and args.draft_layers >= model.config.n_layers:
        raise CommandError(f"--draft-layers {args.draft_layers}: must be fewer than the model's "
                           f"{model.config.n_layers} blocks")


def top_logprobs(logits, token, n):
    """(log p of ``token``, [(id, log p)] of the n most likely tokens, most likely first) from one row of logits."""
    logp = log_softmax(np.asarray(logits, dtype=np.float64))
    best = np.argsort(-logp, kind="stable")[:n]
    return float(logp[token]), [(int(i), float(logp[i])) for i in best]


def sampling(args):
    """(temperature, top_k, top_p), all None for greedy — which --temperature 0 also means."""
    if args.temperature == 0:
        return None, None, None
    return args.temperature, args.top_k, args.top_p


def paged_pool(model, prompts, max_new_tokens):
    """Block pools with room for every prompt and its new tokens (``--paged``; the prompts are left-padded into one
    batch, so each row holds the longest one's positions), one per window among the model's layers: a window's
    layers need at most two runs of ⌈(W − 1)/16⌉ + 1 blocks per sequence (the kept positions and a step's new ones)."""
    full = len(prompts) * math.ceil((max(map(len, prompts)) + max_new_tokens) / BLOCK_SIZE)
    windows = [w for w in model.config.windows if w is not None]
    ring = 2 * (math.ceil((max(windows, default=1) - 1) / BLOCK_SIZE) + 1) * len(prompts)
    return LayerPools.for_model(model, full, window_blocks=min(full, ring))


def paged_report(pools):
    """'paged KV cache: 3 blocks of 16 tokens at most (0.52 MB)', and a window pool's after it."""
    parts = [f"{peak} block{'s' * (peak != 1)} of {pools.block_size} tokens at most ({peak * nbytes / 1e6:.2f} MB)"
             + ("" if window is None else f" for the {layers} layers of window {window}")
             for window, layers, peak, nbytes in pools.report()]
    return "paged KV cache: " + "; ".join(parts)


@functools.lru_cache(maxsize=2)
def draft_head(path):
    """The draft head at path (None: the shipped one), read once per process."""
    return load_shipped_head(path)


def make_draft(model, args):
    """A fresh draft for ``--speculative`` (it holds the sequence's state: one per generation)."""
    if args.speculative == "head":
        return HeadDraft(draft_head(args.draft_head), model)
    if args.speculative == "prompt-lookup":
        return PromptLookup(model.config.vocab_size)
    return ModelDraft(early_exit(model, args.draft_layers))


def generate_one(model, prompt, args, eos_id, on_token=None, until=None):
    """Continue ``prompt`` (ids) with ``model`` under the command's options: greedy or sampled (seeded), plainly,
    speculatively or on the paged cache.  on_token(id) as each token is kept; until() ends it early.
    Returns (new ids, [(log p, top)] per token when --logprobs, a line saying what the technique did or None)."""
    temperature, top_k, top_p = sampling(args)
    sampled = any(v is not None for v in (temperature, top_k, top_p))
    rng = np.random.default_rng(args.seed)
    if args.speculative:
        t0 = time.perf_counter()
        out, stats = speculative_generate(model, make_draft(model, args), prompt, args.max_new_tokens, args.gamma,
                                          temperature=(1.0 if temperature is None else temperature) if sampled
                                          else None, top_k=top_k, top_p=top_p, rng=rng if sampled else None,
                                          eos_id=eos_id, on_token=on_token, until=until)
        spec_s = time.perf_counter() - t0
        said = (f"speculative {args.speculative}: {stats.accepted} of {stats.drafted} drafts accepted "
                f"({stats.acceptance_rate:.2f}), {stats.tokens_per_call:.2f} tokens per target pass")
        if args.compare:  # the same prompt decoded plainly, up to as many tokens
            t0 = time.perf_counter()
            plain = model.generate(prompt, max(1, len(out)), temperature=temperature, top_k=top_k, top_p=top_p,
                                   seed=args.seed, eos_id=eos_id)
            plain_s = time.perf_counter() - t0
            same = "the same tokens" if plain == out else "other tokens" + ("" if sampled else " (a bug: greedy)")
            said += (f"; plain decoding {plain_s:.2f} s, speculative {spec_s:.2f} s: {plain_s / spec_s:.2f}x, "
                     f"{same}")
        return out, [], said
    pool = paged_pool(model, [prompt], args.max_new_tokens) if args.paged else None
    session = LMSession(model, [list(prompt)], make_cache=contiguous_cache if pool is None else paged_cache(pool))
    logprobs = []

    def step(i, s, tokens):
        if args.logprobs:
            logprobs.append(top_logprobs(s.next_logits[0], int(tokens[0]), args.logprobs))
        if on_token is not None:
            on_token(int(tokens[0]))

    if sampled:
        out = sample(session, args.max_new_tokens, rng=rng, temperature=1.0 if temperature is None else temperature,
                     top_k=top_k, top_p=top_p, eos_id=eos_id, on_step=step, until=until)[0]
    else:
        out = greedy(session, args.max_new_tokens, eos_id=eos_id, on_step=step, until=until)[0]
    return out, logprobs, None if pool is None else paged_report(pool)


def logprob_lines(tokens, logprobs, show):
    """One line per token: its text, its log-probability and the most likely tokens' (``show(ids)`` renders ids)."""
    return [f"  {show([t]):>16} {logp:9.4f}   top: " + ", ".join(f"{show([u])} {v:.4f}" for u, v in top)
            for t, (logp, top) in zip(tokens, logprobs)]
