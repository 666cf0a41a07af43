"""``python -m transformer_np bench {forward, decode, embed, llm, serve, speculative, quality, cost}``: forward-pass
speed against torch and the matmul peak, decoding speed with and without the KV cache, MiniLM sentence embeddings
against sentence-transformers, SmolLM2's decoding and prefill against transformers and the memory-bandwidth
roofline, the serving techniques, speculative decoding with the distilled draft head, every compression method's
quality and bytes, and the cost model against measured times.

Numbers, not tests: it prints what this machine does.  One module per benchmark, each measuring its rows and
printing them with the one table printer (table.py); the machine's figures (matmul peak, copy bandwidth, device,
FLOP and byte counts) come from efficient.cost_model.  Each timing is the best of ``repeat`` runs (erf's alone: at
least 20) after one warm-up run, so that first-call costs (allocation, thread start) are left out.
"""

from __future__ import annotations

from ...model.checkpoint import write_json
from ..options import check_output_dir, check_output_file, non_negative_int, positive_int, read_text_file, writing
from .cost import bench_cost
from .decode import bench_decode
from .embed import bench_embed
from .forward import bench_breakdown, bench_erf, bench_forward
from .gemma3 import bench_gemma3
from .llm import FORMATS as LLM_FORMATS
from .llm import bench_llm
from .quality import bench_quality
from .serve import bench_serve
from .speculative import bench_speculative

HELP = "print speed numbers (not a test)"
ERRORS = (ImportError, RuntimeError, ValueError)  # a backend not installed or without a device; bad options
BACKENDS_FOR = ("forward", "decode", "llm")  # the benchmarks that can run on another library's arrays
DRAWS = ("decode", "cost", "quality")  # the benchmarks that draw (with --plot)


def _forward(args, print_fn):
    result = bench_forward(quick=args.quick, repeat=args.repeat, with_torch=not args.no_torch, backend=args.backend,
                           print_fn=print_fn)
    if args.breakdown:
        result["breakdown_s"] = bench_breakdown(quick=args.quick, repeat=args.repeat, print_fn=print_fn)
        result["erf"] = bench_erf(quick=args.quick, repeat=args.repeat, print_fn=print_fn)
    return result


# name: run(args, print_fn) -> the result written by --json
BENCHMARKS = {
    "forward": _forward,
    "decode": lambda args, print_fn: bench_decode(quick=args.quick, backend=args.backend, plot=args.plot,
                                                  no_cache_up_to=args.no_cache_up_to, print_fn=print_fn),
    "embed": lambda args, print_fn: bench_embed(print_fn=print_fn),
    "llm": lambda args, print_fn: (
        bench_gemma3(quick=args.quick, with_torch=not args.no_torch, context=args.long_prompt, print_fn=print_fn)
        if args.model == "gemma3" else
        bench_llm(quick=args.quick, with_torch=not args.no_torch, backend=args.backend,
                  random_weights=args.random_weights, print_fn=print_fn,
                  formats=LLM_FORMATS if args.weights is None else args.weights, long_prompt_tokens=args.long_prompt)),
    "serve": lambda args, print_fn: bench_serve(quick=args.quick, print_fn=print_fn),
    "speculative": lambda args, print_fn: bench_speculative(quick=args.quick, print_fn=print_fn),
    "quality": lambda args, print_fn: bench_quality(tokens=args.tokens, print_fn=print_fn, figure_dir=args.plot,
                                                    text=None if args.text is None else read_text_file("--text",
                                                                                                       args.text),
                                                    stride=args.stride),
    "cost": lambda args, print_fn: bench_cost(quick=args.quick, repeat=args.repeat, plot=args.plot,
                                              print_fn=print_fn),
}


def add_arguments(bench):
    bench.add_argument("what", choices=list(BENCHMARKS),
                       help="what to time (quality: every compression method against float32; cost: the cost "
                            "model's predictions against measured times)")
    bench.add_argument("--tokens", type=positive_int, default=None,
                       help="quality: evaluation tokens (default: all 23,294 of the shipped text)")
    bench.add_argument("--text", metavar="FILE", help="quality: evaluate on this UTF-8 text instead of the shipped one")
    bench.add_argument("--stride", type=positive_int, default=None,
                       help="quality: windows of 512 tokens every STRIDE (default 512, no overlap)")
    bench.add_argument("--json", metavar="PATH", help="also write the numbers to this JSON file")
    bench.add_argument("--quick", action="store_true", help="tiny shapes, for a smoke test")
    bench.add_argument("--repeat", type=positive_int, default=3, help="timed runs per workload (best is kept)")
    bench.add_argument("--no-torch", action="store_true", help="skip the torch comparison")
    bench.add_argument("--backend", choices=["numpy", "torch", "cupy"], default="numpy",
                       help="also run transformer_np's functions on this library's arrays (cupy: GPU)")
    bench.add_argument("--breakdown", action="store_true", help="forward: also time the parts of one encoder layer")
    bench.add_argument("--model", choices=["smollm2", "gemma3"], default="smollm2",
                       help="llm: the model (gemma3: also the KV cache's bytes and decoding at a long context with "
                            "its sliding-window layers; --long-prompt N sets that context)")
    bench.add_argument("--random-weights", action="store_true",
                       help="llm: SmolLM2-135M's shape with random weights (the same timings, no GGUF file needed)")
    bench.add_argument("--weights", nargs="+", choices=list(LLM_FORMATS), default=None, metavar="FORMAT",
                       help=f"llm: the stored forms of the weights to compare, a row each, float32 first "
                            f"({', '.join(LLM_FORMATS)}; q4: SmolLM2's own 4-bit blocks; default: all)")
    bench.add_argument("--long-prompt", type=non_negative_int, default=None, metavar="N",
                       help="llm: also time an N-token prefill with plain and blockwise attention, with its peak "
                            "memory (default 4096, --quick 1024; 0: skip)")
    bench.add_argument("--plot", metavar="PATH",
                       help="decode, cost: draw the plot to this PNG; quality: write its three figures into this "
                            "folder (default: nothing is drawn; the committed ones are in figures/)")
    bench.add_argument("--no-cache-up-to", type=non_negative_int, default=None, metavar="N",
                       help="decode: time the recomputing path only up to N tokens (it is O(N^2))")


def run(args, print_fn=print):
    check_output_file("--json", args.json)
    if args.backend != "numpy" and args.what not in BACKENDS_FOR:
        raise ValueError(f"--backend {args.backend}: only bench {', '.join(BACKENDS_FOR)} run on another "
                         f"library's arrays, not bench {args.what}")
    if (args.text is not None or args.stride is not None) and args.what != "quality":
        raise ValueError(f"--text, --stride: only bench quality evaluates on a text, not bench {args.what}")
    if args.stride is not None and args.stride > 512:
        raise ValueError(f"--stride {args.stride}: at most the window, 512 tokens")
    if args.weights is not None and args.what != "llm":
        raise ValueError(f"--weights: only bench llm compares stored weights, not bench {args.what}")
    if args.long_prompt is not None and args.what != "llm":
        raise ValueError(f"--long-prompt: only bench llm prefills a long prompt, not bench {args.what}")
    if args.model != "smollm2" and args.what != "llm":
        raise ValueError(f"--model: only bench llm runs another model, not bench {args.what}")
    if args.model == "gemma3" and (args.weights is not None or args.random_weights or args.backend != "numpy"):
        raise ValueError("--model gemma3: its file's weights on NumPy only (no --weights, --random-weights, "
                         "--backend)")
    if args.random_weights and args.what != "llm":
        raise ValueError(f"--random-weights: only bench llm has weights to replace, not bench {args.what}")
    if args.plot is not None:
        if args.what not in DRAWS:
            raise ValueError(f"--plot: only bench decode, cost and quality draw, not bench {args.what}")
        (check_output_dir if args.what == "quality" else check_output_file)("--plot", args.plot)
    result = BENCHMARKS[args.what](args, print_fn)
    if args.json:
        with writing("--json", args.json):
            write_json(result, args.json)
        print_fn(f"wrote {args.json}")
    return 0
