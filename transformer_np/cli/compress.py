"""``python -m transformer_np compress --model smollm2 --method NAME``: compress SmolLM2 one way and print its
perplexity on the shipped evaluation text, its resident weight bytes and its decoding speed, against float32.

Methods: those of ``efficient.compress`` and ``gguf`` (the file's own Q4_1 / Q8_0 blocks, kept as they are and
dequantized at use).  ``bench quality`` runs them all."""

from __future__ import annotations

from ..efficient import compress as C
from ..efficient import quality
from ..pretrained.registry import load
from .options import positive_int, probability

HELP = "compress SmolLM2 one way: perplexity, bytes and speed against float32"
ERRORS = (ImportError, FileNotFoundError, ValueError)
METHODS = (*C.METHODS, "gguf")


def add_arguments(parser):
    parser.add_argument("--model", choices=["smollm2"], default="smollm2", help="the model to compress")
    parser.add_argument("--method", choices=METHODS, required=True, help="how (see efficient/compress.py)")
    parser.add_argument("--bits", type=positive_int, help="int8/int4: bits per weight (2-8)")
    parser.add_argument("--group-size", type=positive_int, help="int8/int4: weights per scale (default: one per "
                                                                 "output channel)")
    parser.add_argument("--sparsity", type=probability, default=0.5, help="pruning: the fraction removed")
    parser.add_argument("--alpha", type=probability, default=0.5, help="smoothquant: migration strength")
    parser.add_argument("--threshold", type=float, default=6.0, help="llm.int8: outlier magnitude")
    parser.add_argument("--kv-keys", choices=["token", "channel"], default="token",
                        help="kv-int8: keys quantized per token, or per channel in blocks of 32 tokens")
    parser.add_argument("--tokens", type=positive_int, default=2048,
                        help="evaluation tokens (the shipped text has 23,294; bench quality uses them all)")
    parser.add_argument("--calibration-tokens", type=positive_int, default=2048,
                        help="smoothquant/wanda: calibration tokens read")
    parser.add_argument("--quantize-embedding", action="store_true",
                        help="also compress the embedding table (SmolLM2's output layer too)")


def options(args):
    """The method's options from the command line, only those it takes."""
    out = {}
    if args.method in ("int8", "int4"):
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


def run(args, print_fn=print):
    model = load("smollm2")
    ids = model.tokenize(quality.eval_text())[:args.tokens]
    base = quality.measure(model, "float32", ids)
    if args.method == "gguf":
        row = quality.measure(load("smollm2", keep_quantized=True), "float32", ids) | {"method": "gguf"}
    else:
        recorders = None
        if args.method in C.NEEDS_CALIBRATION:
            recorders = quality.record_activations(model, model.tokenize(quality.calibration_text())
                                                   [:args.calibration_tokens])
        row = quality.measure(model, args.method, ids, recorders, **options(args))
    print_fn(f"SmolLM2-135M-Instruct, {base['tokens']:,} evaluation tokens (perplexity), 32 greedy tokens (speed)")
    for r in (base, row):
        print_fn(format_row(r, base))
    return 0


def format_row(r, base):
    """One printed line: method, perplexity and its change, weight MB, decoding tokens/s."""
    name = C.method_label(r)
    change = 100 * (r["perplexity"] / base["perplexity"] - 1)
    return (f"{name:34s} perplexity {r['perplexity']:8.3f} ({change:+6.2f}%)   "
            f"weights {r['weight_bytes'] / 1e6:6.1f} MB   decode {r['decode_tok_s']:5.1f} tok/s")
