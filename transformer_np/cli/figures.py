"""``python -m transformer_np figures``: draw every PNG of figures/ (deterministic)."""

from __future__ import annotations

import matplotlib

from ..viz.figures import make_figures

HELP = "draw every PNG of figures/ (deterministic)"


def add_arguments(parser):
    parser.add_argument("--out", default="figures", help="folder to write into (default: figures)")
    parser.add_argument("names", nargs="*", help="only these figures (default: all)")


def run(args, print_fn=print):
    matplotlib.use("Agg")
    for path in make_figures(args.out, args.names or None):
        print_fn(path)
    return 0
