"""``python -m transformer_np serve --model smollm2 --port 8000``: the model behind an OpenAI-compatible HTTP API
(cli.openai_api) — ``POST /v1/chat/completions`` and ``/v1/completions`` (streamed or not), ``GET /v1/models``,
``/health`` — with the serving engine batching concurrent requests.  Ctrl-C (SIGINT) or SIGTERM stops it: the
running requests are finished for up to --drain seconds, then cancelled."""

from __future__ import annotations

import importlib.util

from .llm import load_llm
from .openai_api import make_app, uvicorn_server
from .options import CommandError, add_weights_option, non_negative_int, positive_float, positive_int

HELP = "serve a model over an OpenAI-compatible HTTP API (chat and text completions, streaming)"
ERRORS = (ImportError, FileNotFoundError, ValueError)
INSTALL = "pip install 'transformer_np[serve]' (starlette and uvicorn)"


def add_arguments(parser):
    parser.add_argument("--model", default="smollm2", help="a model name (smollm2, gemma3) or a .gguf file")
    add_weights_option(parser)
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on (default: this machine only)")
    parser.add_argument("--port", type=non_negative_int, default=8000)
    parser.add_argument("--max-batch", type=positive_int, default=8, help="requests decoded together")
    parser.add_argument("--blocks", type=positive_int, default=512, help="KV blocks of 16 tokens in the pool")
    parser.add_argument("--chunk", type=positive_int, default=256,
                        help="tokens a step may compute: decodes first, then prefill chunks (default: 256)")
    parser.add_argument("--drain", type=positive_float, default=5.0,
                        help="at shutdown, seconds to let running requests finish before cancelling them")


def run(args, print_fn=print):
    if args.chunk <= args.max_batch:
        raise CommandError(f"--chunk {args.chunk} must exceed --max-batch {args.max_batch}")
    for library in ("starlette", "uvicorn"):
        if importlib.util.find_spec(library) is None:
            raise ImportError(f"serve needs {library}: {INSTALL}")
    model = load_llm(args.model, args.weights)
    app = make_app(model, drain_s=args.drain, n_blocks=args.blocks, max_batch=args.max_batch, chunk=args.chunk)
    print_fn(f"serving {model.name} on http://{args.host}:{args.port}/v1 (OpenAI-compatible; Ctrl-C stops)")
    uvicorn_server(app, args.drain, host=args.host, port=args.port, log_level="warning").run()
    return 0
