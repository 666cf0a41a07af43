"""Command line: ``python -m transformer_np {tour, bench, figures} ...``"""

from __future__ import annotations

import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m transformer_np", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    tour = sub.add_parser("tour", help="run the source document's model end to end, checking every formula")
    tour.add_argument("--seed", type=int, default=0)
    bench = sub.add_parser("bench", help="print speed numbers (not a test)")
    bench.add_argument("what", choices=["forward"], help="what to time")
    bench.add_argument("--json", metavar="PATH", help="also write the numbers to this JSON file")
    bench.add_argument("--quick", action="store_true", help="tiny shapes, for a smoke test")
    bench.add_argument("--repeat", type=int, default=3, help="timed runs per workload (best is kept)")
    bench.add_argument("--no-torch", action="store_true", help="skip the torch comparison")
    bench.add_argument("--backend", choices=["numpy", "torch", "cupy"], default="numpy",
                       help="also run transformer_np's functions on this library's arrays (cupy: GPU)")
    bench.add_argument("--breakdown", action="store_true", help="also time the parts of one encoder layer")
    figures = sub.add_parser("figures", help="draw every PNG of figures/ (deterministic)")
    figures.add_argument("--out", default="figures", help="folder to write into (default: figures)")
    figures.add_argument("names", nargs="*", help="only these figures (default: all)")
    args = parser.parse_args(argv)

    if args.command == "tour":
        from .tour import run_tour

        rows = run_tour(seed=args.seed)
        return 0 if all(ok for *_, ok in rows) else 1
    if args.command == "bench":
        from .bench import bench_breakdown, bench_forward, write_json

        try:
            result = bench_forward(quick=args.quick, repeat=args.repeat, with_torch=not args.no_torch,
                                   backend=args.backend)
        except (ImportError, RuntimeError) as e:  # a backend that is not installed or has no device
            print(f"error: {e}", file=sys.stderr)
            return 2
        if args.breakdown:
            result["breakdown_s"] = bench_breakdown(quick=args.quick, repeat=args.repeat)
        if args.json:
            write_json(result, args.json)
            print(f"wrote {args.json}")
        return 0
    if args.command == "figures":
        from .figures import make_figures

        for path in make_figures(args.out, args.names or None):
            print(path)
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
