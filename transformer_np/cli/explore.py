"""``python -m transformer_np explore --model NAME --text "…" --out page.html``: an interactive page of the model's
attention (head view and model view; with --generate N, the generation view; with --compare, the compare view),
one self-contained HTML file that opens offline (viz.explorer)."""

from __future__ import annotations

from ..viz.explorer import GENERATES, MODELS, VARIANTS, explore
from .options import check_output_file, non_negative_int, writing

HELP = "write an interactive page of a model's attention (one self-contained HTML file)"
ERRORS = (ValueError, ImportError)


def add_arguments(p):
    p.add_argument("--model", required=True, choices=MODELS, help="the model to look inside")
    p.add_argument("--text", required=True, help="its input")
    p.add_argument("--generate", type=non_negative_int, default=0, metavar="N",
                   help=f"also step through N greedily generated tokens with the KV cache ({', '.join(GENERATES)}; "
                        "an encoder-decoder stops at its end token)")
    p.add_argument("--compare", choices=sorted(VARIANTS),
                   help="with --generate: set a compressed variant's next-token distribution beside float32's, "
                        "with the KL divergence per step")
    p.add_argument("--out", default="explore.html", help="where to write the page (default: explore.html)")


def run(args, print_fn=print):
    check_output_file("--out", args.out)
    page = explore(args.model, args.text, generate=args.generate, compare=args.compare)
    with writing("--out", args.out):
        page.save(args.out)
    print_fn(f"wrote {args.out} ({len(page.html.encode()):,} bytes): open it in a browser, no network needed")
    return 0
