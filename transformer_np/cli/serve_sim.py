"""``python -m transformer_np serve-sim``: replay a generated workload through continuous batching on the paged KV
cache, and print throughput, latency percentiles and cache occupancy."""

from __future__ import annotations

import numpy as np

from ..efficient.serve import random_workload, simulate
from ..model.config import TransformerConfig
from ..model.models import DecoderLM
from .llm import load_llm
from .options import non_negative_int, positive_int, progress_bar

HELP = "replay a generated workload through continuous batching on the paged KV cache"
ERRORS = (ImportError, FileNotFoundError, ValueError, MemoryError)


def add_arguments(parser):
    parser.add_argument("--model", choices=["tiny", "smollm2"], default="tiny",
                        help="tiny: a random decoder-only LM (fast); smollm2: the real 135M model")
    parser.add_argument("--requests", type=positive_int, default=32)
    parser.add_argument("--max-batch", type=positive_int, default=8)
    parser.add_argument("--blocks", type=positive_int, default=512, help="KV blocks in the pool")
    parser.add_argument("--block-size", type=positive_int, default=16, help="tokens per KV block")
    parser.add_argument("--seed", type=non_negative_int, default=0)


def run(args, print_fn=print):
    if args.model == "smollm2":
        model = load_llm("smollm2")
        prompts, outputs = (8, 64), (4, 48)
    else:
        model = DecoderLM(TransformerConfig.lm_tiny(max_len=128, vocab_size=50), seed=args.seed)
        prompts, outputs = (2, 40), (2, 40)
    work = random_workload(np.random.default_rng(args.seed), args.requests, model.config.vocab_size, prompts, outputs)
    with progress_bar(len(work), "requests", "request") as progress:
        sim = simulate(model, work, max_batch=args.max_batch, n_blocks=args.blocks, block_size=args.block_size,
                       progress=progress)
    lat, steps = sim["latency_s"], sim["latency_steps"]
    print_fn(f"{sim['requests']} requests, {sim['tokens']} tokens in {sim['seconds']:.2f} s: "
             f"{sim['tokens_per_s']:.1f} tokens/s over {sim['steps']} steps (mean batch {sim['mean_batch']:.1f} "
             f"of {args.max_batch})")
    print_fn(f"latency p50 / p90 / p99: {lat[50]:.2f} / {lat[90]:.2f} / {lat[99]:.2f} s "
             f"({steps[50]:.0f} / {steps[90]:.0f} / {steps[99]:.0f} steps)")
    print_fn(f"KV cache: peak {sim['peak_blocks']} of {args.blocks} blocks of {args.block_size} tokens "
             f"({sim['peak_blocks'] * sim['block_bytes'] / 2**20:.2f} MiB)")
    return 0
