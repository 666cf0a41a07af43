"""``python -m transformer_np sweep``: choosing hyper-parameters, with numbers.

First what each of d_model, n_heads, n_kv_heads, n_layers, d_ff costs on SmolLM2-135M's shape (the cost model:
parameters, FLOPs and KV bytes per token, predicted prefill and decode times on a published chip) — instant.
Then what each buys: a task's encoder-decoder trained here over d_model × layers × heads (and a grouped-query
and a wider-FFN row) for a fixed number of steps, with held-out accuracy and training time — minutes.
``--json`` writes the trained table (the shipped one is transformer_np/efficient/data/sweep_reverse.json);
``--rows 32,1,1`` re-runs chosen rows and compares them with the shipped table.
"""

from __future__ import annotations

import argparse
import os
import platform

from ..efficient import cost_model as cm
from ..efficient import hyperparams as hp
from ..model.checkpoint import write_json
from ..pretrained.llama import LlamaConfig
from ..training.tasks import TASKS
from .options import CommandError, check_output_file, non_negative_int, positive_int, writing

HELP = "choosing d_model / heads / layers / d_ff: the cost model's table, then a small training sweep"
ERRORS = (ValueError,)


def row_spec(text):
    """'C,L,H[,H_kv[,F]]' -> a hyper-parameter dict."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be C,L,H[,H_kv[,F]] integers, got {text!r}") from None
    if not 3 <= len(values) <= 5 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"must be 3 to 5 positive integers C,L,H[,H_kv[,F]], got {text!r}")
    names = ("d_model", "n_layers", "n_heads", "n_kv_heads", "d_ff")
    return dict(zip(names, values))


def add_arguments(p):
    p.add_argument("--task", default="reverse", choices=sorted(TASKS), help="the task trained in the sweep")
    p.add_argument("--steps", type=positive_int, default=hp.STEPS, help="training steps per row")
    p.add_argument("--rows", type=row_spec, nargs="+", metavar="C,L,H[,H_kv[,F]]",
                   help="train only these rows (default: the whole grid)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="the seed of the rows given by --rows")
    p.add_argument("--hardware", default="h200", choices=sorted(cm.HARDWARE),
                   help="the chip of the cost-model table (published figures)")
    p.add_argument("--effects-only", action="store_true", help="print the cost-model table and stop")
    p.add_argument("--json", metavar="PATH", help="write the trained rows as JSON (with --rows: replace or add "
                   "those rows in PATH's table)")


def print_effects(hardware, print_fn=print):
    base = cm.ModelShape.from_config(LlamaConfig(), "SmolLM2-135M")
    rows = hp.effects(base, hardware)
    print_fn(f"what each hyper-parameter costs: {base.name}'s shape, one change at a time; bfloat16 weights and "
             f"cache, context 2,048, on {hardware.name} (roofline)")
    print_fn(f"{'variant':<16}{'C':>6}{'H':>4}{'H_kv':>5}{'D':>5}{'L':>4}{'F':>6}{'params (M)':>12}"
             f"{'MFLOP/token':>13}{'KV KB/token':>13}{'prefill 512 ms':>16}{'decode ms':>11}")
    for r in rows:
        print_fn(f"{r['variant']:<16}{r['d_model']:>6}{r['n_heads']:>4}{r['n_kv_heads']:>5}{r['d_head']:>5}"
                 f"{r['n_layers']:>4}{r['d_ff']:>6}{r['params'] / 1e6:>12.1f}{r['flops_per_token'] / 1e6:>13.0f}"
                 f"{r['kv_bytes_per_token'] / 1e3:>13.1f}{r['prefill_s'] * 1e3:>16.3f}{r['decode_s'] * 1e3:>11.4f}")
    return rows


def format_row(r):
    return (f"{r['seed']:>5}{r['d_model']:>6}{r['n_layers']:>4}{r['n_heads']:>4}{r['n_kv_heads']:>5}{r['d_ff']:>6}"
            f"{r['params']:>10,}{r['accuracy']:>10.3f}{r['final_loss']:>12.4f}{r['train_s']:>10.1f}")


def run(args, print_fn=print):
    if args.effects_only and args.json:  # the cost table is printed; only trained rows are written
        raise CommandError("--json: --effects-only trains nothing, so there are no rows to write")
    check_output_file("--json", args.json)
    print_effects(cm.HARDWARE[args.hardware], print_fn)
    if args.effects_only:
        return 0
    shipped = hp.load_sweep()["rows"] if os.path.exists(hp.SWEEP_TABLE) else []
    print_fn(f"\nwhat each buys: task {args.task!r}, {args.steps} steps per row (batch and schedule of the task), "
             "held-out exact-match accuracy")
    print_fn(f"{'seed':>5}{'C':>6}{'L':>4}{'H':>4}{'H_kv':>5}{'F':>6}{'params':>10}{'accuracy':>10}{'final loss':>12}"
             f"{'train s':>10}  shipped table")

    def on_row(r):
        match = [s for s in shipped if hp.same_row(r, s)]
        ref = (f"  accuracy {match[0]['accuracy']:.3f}, loss {match[0]['final_loss']:.4f}" if match
               else "  (not in it)")
        print_fn(format_row(r) + ref)

    rows = hp.run_sweep(args.task, args.steps, args.rows, args.seed, on_row=on_row)
    if args.json:
        if args.rows and os.path.exists(args.json):
            rows = hp.merge_rows(hp.load_sweep(args.json)["rows"], rows)
        command = "python -m transformer_np sweep --json PATH" + ("" if args.steps == hp.STEPS
                                                                  else f" --steps {args.steps}")
        with writing("--json", args.json):
            write_json(dict(command=command, machine=f"{platform.machine()}, {platform.python_version()}",
                            rows=rows), args.json)
        print_fn(f"wrote {args.json}")
    return 0
