"""``python -m transformer_np figures``: draw every PNG of figures/ (deterministic)."""

from __future__ import annotations

import matplotlib

from ..viz.figures import FIGURES, make_figures
from .options import CommandError, check_output_dir

HELP = "draw every PNG of figures/ (deterministic)"


def add_arguments(parser):
    parser.add_argument("--out", default="figures", help="folder to write into (default: figures)")
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"only these figures (default: all): {', '.join(sorted(FIGURES))}")


def run(args, print_fn=print):
    check_output_dir("--out", args.out)
    unknown = sorted(set(args.names) - set(FIGURES))
    if unknown:
        raise CommandError(f"NAME {', '.join(unknown)}: no such figure (known: {', '.join(sorted(FIGURES))})")
    matplotlib.use("Agg")
    for path in make_figures(args.out, args.names or None):
        print_fn(path)
    return 0
