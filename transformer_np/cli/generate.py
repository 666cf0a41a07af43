"""``python -m transformer_np generate``: decode prompts with a checkpoint, a shipped task model, or a seeded
random tiny LM — greedy, sampled or beam search, with or without the KV cache."""

from __future__ import annotations

import os
import time

import numpy as np

from ..decoding.cache import contiguous_cache
from ..decoding.search import beam_search, greedy, sample
from ..decoding.sessions import LMSession, Seq2SeqSession
from ..efficient.paged import paged_cache
from ..model.config import TransformerConfig
from ..model.models import Classifier, DecoderLM, Transformer
from ..model.protocol import DecoderModel, TextLLM
from ..pretrained.registry import load, load_shipped
from ..training.tasks import BOS, EOS
from .llm import (
    add_technique_options,
    check_technique_options,
    generate_one,
    load_llm,
    logprob_lines,
    paged_pool,
    paged_report,
    sampling,
    top_logprobs,
)
from .options import (
    CommandError,
    GenerationClock,
    add_weights_option,
    cut_at_stop,
    finite_float,
    non_negative_float,
    non_negative_int,
    positive_int,
    probability,
    stop_string,
)

HELP = "generate tokens with a checkpoint (or a seeded random tiny LM)"


def add_arguments(gen):
    gen.add_argument("--checkpoint", help=".npz from save(); default: a random decoder-only LM (vocab 11)")
    gen.add_argument("--model", choices=["smollm2", "gemma3"],
                     help="a pretrained LLM: the prompts are text it continues (gemma3: Gemma 3 270M, float32 only)")
    gen.add_argument("--task", help="use the shipped trained model of a task (reverse, dates): text prompts")
    gen.add_argument("--prompt", action="append", required=True,
                     help="token ids separated by spaces, e.g. '1 2 3'; repeat for a batch")
    gen.add_argument("--max-new-tokens", type=positive_int, default=10)
    gen.add_argument("--beam", type=positive_int, metavar="N", help="beam search of width N (n-best list)")
    gen.add_argument("--alpha", type=finite_float, default=0.0, help="beam search length penalty")
    gen.add_argument("--temperature", type=non_negative_float, help="sample with this temperature; 0 is greedy")
    gen.add_argument("--top-k", type=positive_int, help="sample from the k most likely tokens")
    gen.add_argument("--top-p", type=probability, help="sample from the nucleus of probability p")
    gen.add_argument("--seed", type=non_negative_int, default=0, help="random seed for sampling and the random model")
    gen.add_argument("--eos", type=non_negative_int, help="stop a row when it emits this id (default: none; "
                                                          "with --model, the model's end-of-turn token)")
    gen.add_argument("--stop", type=stop_string, action="append", default=[], metavar="STRING",
                     help="--model/--task: end a row's text before this string (repeat for several)")
    gen.add_argument("--logprobs", type=positive_int, metavar="N",
                     help="print each new token's log-probability and the N most likely (greedy or sampling)")
    gen.add_argument("--bos", type=non_negative_int, default=BOS,
                     help=f"encoder-decoder: first target token (default {BOS})")
    gen.add_argument("--no-cache", action="store_true", help="recompute the whole forward pass every step")
    add_weights_option(gen)
    add_technique_options(gen)


ERRORS = (ValueError, TypeError, OSError, ImportError)


def run(args, print_fn=print):
    """Decode each prompt and print the new token ids (or text, with --task)."""
    tokenizer = None
    if args.model and (args.task or args.checkpoint):
        raise CommandError("--model excludes --task and --checkpoint")
    if args.weights != "float32" and args.model != "smollm2":
        raise CommandError(f"--weights {args.weights}: applies to SmolLM2's file (--model smollm2)")
    check_technique_options(args)
    if (args.speculative or args.paged) and (args.beam is not None or args.no_cache):
        raise CommandError("--speculative and --paged: greedy or sampling with the KV cache, not --beam or --no-cache")
    if args.model:
        model = load_llm(args.model, args.weights)
        tokenizer = model.tokenizer
        args.eos = model.eos_id if args.eos is None else args.eos  # the end of the model's turn
    elif args.task:
        model = load_shipped(args.task)
        if not isinstance(model, Transformer):
            raise ValueError(f"task {args.task!r} is a classifier, not a generator (try reverse or dates)")
        tokenizer = model.tokenizer
        args.eos = EOS if args.eos is None else args.eos
        args.max_new_tokens = max(args.max_new_tokens, 20)
    elif args.checkpoint:
        if not os.path.isfile(args.checkpoint):
            raise CommandError(f"--checkpoint {args.checkpoint}: No such file")
        model = load(args.checkpoint)
    else:
        model = DecoderLM(TransformerConfig.lm_tiny(), seed=args.seed)
        print_fn(f"no --checkpoint: a random {model} (seed {args.seed})")
    if isinstance(model, Classifier):
        raise CommandError(f"--checkpoint {args.checkpoint}: holds a classifier, not a generator")
    if (args.speculative or args.paged) and not isinstance(model, DecoderModel):
        raise CommandError("--speculative and --paged: a decoder-only model's options, not an encoder-decoder's")
    check_technique_options(args, model)
    V = model.config.vocab_size
    for option, value in (("--eos", args.eos), ("--bos", args.bos)):
        if value is not None and value >= V:
            raise CommandError(f"{option} {value}: must be a token id below the vocabulary size {V}")
    prompts = []
    for i, text in enumerate(args.prompt):
        if tokenizer is not None:
            prompts.append(model.prompt_ids(text) if isinstance(model, TextLLM) else tokenizer.encode(text))
            continue
        try:
            prompts.append([int(t) for t in text.replace(",", " ").split()])
        except ValueError:
            raise ValueError(f"--prompt {i + 1} must be token ids separated by spaces, got {text!r}") from None
    if args.stop and tokenizer is None:
        raise CommandError("--stop: only a model with text (--model, --task) has strings to stop at")
    show = (lambda ids: repr(tokenizer.decode(ids))) if tokenizer is not None else str
    if args.speculative:
        return _speculative(model, prompts, args, tokenizer, show, print_fn)
    temperature, top_k, top_p = sampling(args)  # temperature 0: greedy
    sampled = any(v is not None for v in (temperature, top_k, top_p))
    if args.beam is not None and sampled:
        raise ValueError("--beam and sampling options (--temperature/--top-k/--top-p) exclude each other")
    if args.beam is not None and (args.logprobs or args.stop):
        raise CommandError("--logprobs and --stop: greedy or sampling only, not --beam")

    pool = paged_pool(model, prompts, args.max_new_tokens) if args.paged else None

    def new_session(batch):
        if isinstance(model, DecoderModel):
            return LMSession(model, batch, use_cache=not args.no_cache,
                             make_cache=contiguous_cache if pool is None else paged_cache(pool))
        return Seq2SeqSession(model, batch, bos_id=args.bos, use_cache=not args.no_cache)

    clock = GenerationClock(time.perf_counter)
    if args.beam is not None:
        for prompt in prompts:
            hyps = beam_search(new_session([prompt]), args.beam, args.max_new_tokens, args.eos, args.alpha)
            print_fn(f"prompt {show(prompt)}: {len(hyps)}-best")
            for tokens, score, logp in hyps:
                print_fn(f"  score {score:9.4f}  log p {logp:9.4f}  {show(tokens)}")
        n = args.max_new_tokens * len(prompts)
    else:
        session = new_session(prompts)
        so_far, logprobs = [[] for _ in prompts], [[] for _ in prompts]

        def step(i, s, tokens):
            clock.token(len(tokens))
            for row, t in zip(so_far, tokens):
                row.append(int(t))
            if args.logprobs:
                for b, t in enumerate(tokens):
                    logprobs[b].append(top_logprobs(s.next_logits[b], int(t), args.logprobs))

        def until():  # every row's text holds a stop string
            return bool(args.stop) and all(cut_at_stop(tokenizer.decode(r), args.stop)[1] for r in so_far)

        if sampled:
            out = sample(session, args.max_new_tokens, rng=np.random.default_rng(args.seed),
                         temperature=temperature if temperature is not None else 1.0,
                         top_k=top_k, top_p=top_p, eos_id=args.eos, on_step=step, until=until)
        else:
            out = greedy(session, args.max_new_tokens, eos_id=args.eos, on_step=step, until=until)
        for b, (prompt, tokens) in enumerate(zip(prompts, out)):
            text = repr(cut_at_stop(tokenizer.decode(tokens), args.stop)[0]) if args.stop else show(tokens)
            print_fn(f"prompt {show(prompt)} -> {text}")
            for line in logprob_lines(tokens, logprobs[b], show):
                print_fn(line)
        n = sum(len(t) for t in out)
        if pool is not None:
            print_fn(paged_report(pool))
        else:
            print_fn(f"KV cache: {session.cache_bytes():,} bytes" if not args.no_cache else "KV cache: off")
    dt = time.perf_counter() - clock.t0
    print_fn(f"{n} tokens in {dt:.3f} s ({n / dt:.1f} tokens/s)" if args.beam is not None else clock.report())
    return 0


def _speculative(model, prompts, args, tokenizer, show, print_fn):
    """--speculative: each prompt continued by speculative decoding (one sequence at a time), then the report."""
    clock = GenerationClock(time.perf_counter)
    for prompt in prompts:
        so_far = []
        until = (lambda so_far=so_far: cut_at_stop(tokenizer.decode(so_far), args.stop)[1]) if args.stop else None
        tokens, _, said = generate_one(model, prompt, args, args.eos,
                                       on_token=lambda t, so_far=so_far: (clock.token(), so_far.append(t)),
                                       until=until)
        text = repr(cut_at_stop(tokenizer.decode(tokens), args.stop)[0]) if args.stop else show(tokens)
        print_fn(f"prompt {show(prompt)} -> {text}")
        print_fn(said)
    print_fn(clock.report())
    return 0
