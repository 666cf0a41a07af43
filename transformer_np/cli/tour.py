"""``python -m transformer_np tour``: the source document's model end to end, every formula checked, as a table."""

from __future__ import annotations

from ..teaching.tour import TOLERANCE, run_tour
from .options import non_negative_int

HELP = "run the source document's model (docs/source_model.md) end to end, checking every formula"


def add_arguments(parser):
    parser.add_argument("--seed", type=non_negative_int, default=0, help="random seed of the model and its input")


def run(args, print_fn=print):
    """Print the tour's table; exit status 1 if any formula differs from its loop-level version."""
    tour = run_tour(seed=args.seed)
    print_fn(f"{tour.model}\n{tour.inputs}\n")
    width = max(len(r[0]) for r in tour.rows)
    fwidth = max(len(r[1]) for r in tour.rows)
    print_fn(f"{'formula':<{width}}  {'function':<{fwidth}}  {'shape':<12}  {'max abs err':>11}  ok")
    for formula, function, shape, err, ok in tour.rows:
        print_fn(f"{formula:<{width}}  {function:<{fwidth}}  {shape:<12}  {err:11.2e}  {'ok' if ok else 'FAIL'}")
    n_ok = sum(r[4] for r in tour.rows)
    print_fn(f"\n{n_ok}/{len(tour.rows)} formulas equal their loop-level versions (float64, tolerance {TOLERANCE:g}).")
    print_fn(f"next-token argmax of the (untrained) model: {tour.argmax}")
    if tour.dates:
        print_fn(f"\nthe shipped dates model, trained in NumPy (held-out exact match {tour.dates_accuracy:.1%}):")
        for text, pred in tour.dates:
            print_fn(f"  {text!r:28} -> {pred}")
    return 0 if tour.ok else 1
