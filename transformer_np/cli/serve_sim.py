"""``python -m transformer_np serve-sim``: replay a generated workload — Poisson arrivals, log-normal prompt and
answer lengths, optionally a shared system prompt and multi-turn conversations — through the serving engine
(continuous batching on the paged KV cache, prefix caching, chunked prefill, preemption), and print throughput,
the latency percentiles, KV occupancy, the prefix cache's hit rate and the preemptions."""

from __future__ import annotations

import numpy as np

from ..efficient.serve import poisson_workload, simulate, simulate_static
from ..model.config import TransformerConfig
from ..model.models import DecoderLM
from .llm import load_llm
from .options import CommandError, non_negative_int, positive_float, positive_int, progress_bar

HELP = "replay a generated workload through the serving engine (continuous batching on the paged KV cache)"
ERRORS = (ImportError, FileNotFoundError, ValueError, MemoryError)


def add_arguments(parser):
    parser.add_argument("--model", choices=["tiny", "smollm2"], default="tiny",
                        help="tiny: a random decoder-only LM (fast); smollm2: the real 135M model")
    parser.add_argument("--requests", type=positive_int, default=32)
    parser.add_argument("--rate", type=positive_float, default=None,
                        help="requests arriving a second, a Poisson process (default: all at once)")
    parser.add_argument("--system-prompt", type=non_negative_int, default=0, metavar="N",
                        help="every prompt starts with the same N tokens (default: 0)")
    parser.add_argument("--turns", type=positive_int, default=1,
                        help="conversations of this many turns, each prompt the whole conversation so far")
    parser.add_argument("--max-batch", type=positive_int, default=8)
    parser.add_argument("--chunk", type=positive_int, default=None,
                        help="tokens a step may compute (decodes first, then prefill chunks; default: no limit)")
    parser.add_argument("--no-prefix-cache", action="store_true", help="recompute every prompt")
    parser.add_argument("--temperature", type=positive_float, default=None, help="sample (default: greedy)")
    parser.add_argument("--static", action="store_true",
                        help="also serve the workload with static batches, for the throughput ratio")
    parser.add_argument("--blocks", type=positive_int, default=512, help="KV blocks in the pool")
    parser.add_argument("--block-size", type=positive_int, default=16, help="tokens per KV block")
    parser.add_argument("--seed", type=non_negative_int, default=0)


def run(args, print_fn=print):
    if args.static and args.turns > 1:
        raise CommandError("--static and --turns exclude each other: a static batch cannot wait for an answer")
    if args.model == "smollm2":
        model = load_llm("smollm2")
        lengths = dict(prompt_mean=40, output_mean=24, max_prompt=256, max_output=96)
    else:
        model = DecoderLM(TransformerConfig.lm_tiny(max_len=512, vocab_size=50), seed=args.seed)
        lengths = dict(prompt_mean=16, output_mean=16, max_prompt=64, max_output=64)
    rng = np.random.default_rng(args.seed)
    work = poisson_workload(rng, args.requests, args.rate or 1e9, model.config.vocab_size, **lengths,
                            system_prompt=args.system_prompt, turns=args.turns,
                            sampling=None if args.temperature is None else {"temperature": args.temperature})
    with progress_bar(len(work), "requests", "request") as progress:
        sim = simulate(model, work, max_batch=args.max_batch, n_blocks=args.blocks, block_size=args.block_size,
                       progress=progress, prefix_cache=not args.no_prefix_cache, chunk=args.chunk)
    for line in report(sim, args.max_batch):
        print_fn(line)
    if args.static:
        static = simulate_static(model, work, args.max_batch)
        print_fn(f"static batches of {args.max_batch}: {static['tokens_per_s']:.1f} tokens/s; continuous "
                 f"batching {sim['tokens_per_s'] / static['tokens_per_s']:.2f}x")
    return 0


def _p(d, scale=1.0, unit="s"):
    return " / ".join("-" if d[p] is None else f"{d[p] * scale:.3f}" for p in (50, 90, 99)) + f" {unit}"


def report(sim, max_batch):
    """The lines serve-sim prints for a :func:`~transformer_np.efficient.serve.simulate` result."""
    return [f"{sim['requests']} requests, {sim['tokens']} tokens in {sim['seconds']:.2f} s: "
            f"{sim['tokens_per_s']:.1f} tokens/s over {sim['steps']} steps (mean batch {sim['mean_batch']:.1f} of "
            f"{max_batch})",
            "p50 / p90 / p99:",
            f"  time to first token      {_p(sim['ttft_s'])}",
            f"  time per output token    {_p(sim['tpot_s'])}",
            f"  end to end               {_p(sim['latency_s'])}",
            f"  between tokens           {_p(sim['tbt_s'])}",
            f"KV cache: peak {sim['peak_blocks']} of {sim['n_blocks']} blocks "
            f"({sim['peak_blocks'] * sim['block_bytes'] / 2**20:.2f} MiB), mean {sim['mean_blocks']:.1f}; prefix "
            f"cache hit rate {sim['prefix_hit_rate']:.0%}; preemptions {sim['preemptions']}"]
