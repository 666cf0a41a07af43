"""``python -m transformer_np compress --model smollm2 --method NAME``: compress SmolLM2 one way and print, against
float32, its perplexity and KL divergence from float32's next-token distributions on the shipped evaluation text
(or ``--text FILE``), each with its standard error, its resident weight bytes and its decoding speed.

Methods: those of ``efficient.compress`` and ``gguf`` (the file's own Q4_1 / Q8_0 blocks, kept and dequantized
tile by tile at use).  ``bench quality`` runs them all."""

from __future__ import annotations

from ..efficient import compress as C
from ..efficient import quality
from .llm import load_llm
from .options import positive_int, probability, progress_bar, read_text_file

HELP = "compress SmolLM2 one way: perplexity, bytes and speed against float32"
ERRORS = (ImportError, FileNotFoundError, ValueError)
METHODS = (*C.METHODS, "gguf")


def add_arguments(parser):
    parser.add_argument("--model", choices=["smollm2"], default="smollm2", help="the model to compress")
    parser.add_argument("--method", choices=METHODS, required=True, help="how (see efficient/compress.py)")
    parser.add_argument("--bits", type=positive_int, help="int8/int4/gptq/awq: bits per weight (2-8)")
    parser.add_argument("--group-size", type=positive_int, help="int8/int4/gptq/awq: weights per scale (default: "
                                                                 "one per output channel)")
    parser.add_argument("--sparsity", type=probability, default=0.5, help="pruning: the fraction removed")
    parser.add_argument("--alpha", type=probability, default=0.5, help="smoothquant: migration strength")
    parser.add_argument("--threshold", type=float, default=6.0, help="llm.int8: outlier magnitude")
    parser.add_argument("--kv-keys", choices=["token", "channel"], default="token",
                        help="kv-int8: keys quantized per token, or per channel in blocks of 32 tokens")
    parser.add_argument("--tokens", type=positive_int, default=2048,
                        help="evaluation tokens (the shipped text has 23,294; bench quality uses them all)")
    parser.add_argument("--text", metavar="FILE", help="evaluate on this UTF-8 text instead of the shipped one")
    parser.add_argument("--stride", type=positive_int, default=None,
                        help="evaluation windows of 512 tokens every STRIDE (default 512: no overlap; 256: every "
                             "token after the first window sees at least 256 tokens of context)")
    parser.add_argument("--calibration-tokens", type=positive_int, default=2048,
                        help="gptq/awq/smoothquant/wanda: calibration tokens read")
    parser.add_argument("--quantize-embedding", action="store_true",
                        help="also compress the embedding table (SmolLM2's output layer too)")


def options(args):
    """The method's options from the command line, only those it takes."""
    out = {}
    if args.method in ("int8", "int4", "gptq", "awq"):
        out = {"bits": args.bits, "group_size": args.group_size}
    elif args.method in ("magnitude", "magnitude-global", "wanda"):
        out = {"sparsity": args.sparsity}
    elif args.method == "smoothquant":
        out = {"alpha": args.alpha}
    elif args.method == "llm.int8":
        out = {"threshold": args.threshold}
    elif args.method == "kv-int8":
        out = {"keys": args.kv_keys}
    if args.quantize_embedding:
        out["quantize_embedding"] = True
    return {k: v for k, v in out.items() if v is not None}


INPUT_WIDTHS = (576, 1536)  # SmolLM2's C and F: the input widths that groups of weights divide


def check_options(args):
    """What the command line alone decides, before the model is loaded (a 10 s wait for a typo otherwise)."""
    if args.stride is not None and args.stride > 512:
        raise ValueError(f"--stride {args.stride}: at most the window, 512 tokens")
    grouped = args.method in ("int8", "int4", "gptq", "awq")
    if args.bits is not None and (not grouped or not 2 <= args.bits <= 8):
        raise ValueError(f"--bits {args.bits}: " + ("bits per weight lie in 2…8" if grouped else
                                                     f"--method {args.method} takes no --bits"))
    if args.group_size is not None and (not grouped or any(w % args.group_size for w in INPUT_WIDTHS)):
        raise ValueError(f"--group-size {args.group_size}: " + (
            f"must divide SmolLM2's input widths {' and '.join(map(str, INPUT_WIDTHS))} (a divisor of 192)"
            if grouped else f"--method {args.method} takes no --group-size"))


def run(args, print_fn=print):
    check_options(args)
    text = quality.eval_text() if args.text is None else read_text_file("--text", args.text)
    model = load_llm("smollm2")
    ids = model.tokenize(text)[:args.tokens]
    if len(ids) < 2:
        raise ValueError(f"--text {args.text}: {len(ids)} token, at least 2 are needed to predict one")
    n_windows = len(quality.windows(len(ids), stride=args.stride))
    with progress_bar(n_windows, "float32", "window") as progress:
        base = quality.measure(model, "float32", ids, stride=args.stride, progress=progress)
    if args.method == "gguf":
        with progress_bar(n_windows, "gguf", "window") as progress:
            row = quality.measure(load_llm("smollm2", "q4"), "float32", ids, stride=args.stride,
                                  reference=model, progress=progress) | {"method": "gguf"}
    else:
        calibration = len(quality.windows(args.calibration_tokens)) if args.method in C.NEEDS_CALIBRATION else 0
        with progress_bar(calibration, "calibration", "window") as progress:
            recorders = quality.calibrate(model, args.method, args.calibration_tokens, progress=progress)
        with progress_bar(n_windows, args.method, "window") as progress:
            row = quality.measure(model, args.method, ids, recorders, stride=args.stride, progress=progress,
                                  **options(args))
    print_fn(f"SmolLM2-135M-Instruct, {base['tokens']:,} evaluation tokens (perplexity, KL from float32 ± one "
             "standard error), 32 greedy tokens (speed)")
    for r in (base, row):
        print_fn(format_row(r, base))
    return 0


def format_row(r, base):
    """One printed line: method, perplexity and its change, KL from float32, top-1 agreement, weight MB, decoding
    tokens/s."""
    name = C.method_label(r)
    change = 100 * (r["perplexity"] / base["perplexity"] - 1)
    return (f"{name:30s} perplexity {r['perplexity']:8.3f} ± {r['perplexity_se']:.3f} ({change:+6.2f}%)   "
            f"KL {r['kl_mean']:.5f} ± {r['kl_mean_se']:.5f}   top-1 {r['top1']:.3f}   "
            f"weights {r['weight_bytes'] / 1e6:6.1f} MB   decode {r['decode_tok_s']:5.1f} tok/s")
