"""``python -m transformer_np train``: train a task's model in NumPy with a progress bar, then draw its loss
curve (runs/TASK/loss.png) and, with --export, write the shippable model."""

from __future__ import annotations

import json
import os

import matplotlib
from tqdm import tqdm

from ..training.loop import NonFiniteLoss, train
from ..training.shipped import export_trained
from ..training.tasks import TASKS
from ..viz import plots
from .options import check_output_dir, check_output_file, non_negative_int, positive_int, writing

HELP = "train a task's model in NumPy (reverse, dates, sentiment)"
ERRORS = (ValueError, NonFiniteLoss)


def add_arguments(tr):
    tr.add_argument("--task", required=True, choices=sorted(TASKS), help="which task")
    tr.add_argument("--steps", type=positive_int, help="training steps (default: the task's)")
    tr.add_argument("--seed", type=non_negative_int, default=0)
    tr.add_argument("--out", help="folder for model.npz, loss.png, metrics.json (default: runs/TASK)")
    tr.add_argument("--resume", action="store_true", help="continue from OUT/model.npz")
    tr.add_argument("--eval-every", type=positive_int, default=500, help="validation every N steps")
    tr.add_argument("--export", metavar="PATH", help="also write the shippable model (no optimiser state)")
    tr.add_argument("--no-progress", action="store_true", help="one line per validation instead of a bar")


def run(args, print_fn=print):
    out_dir = args.out or os.path.join("runs", args.task)
    check_output_dir("--out", out_dir)
    check_output_file("--export", args.export)
    if args.resume and not os.path.exists(os.path.join(out_dir, "model.npz")):
        raise ValueError(f"--resume: nothing to resume, {os.path.join(out_dir, 'model.npz')} does not exist")
    bar = None

    def on_step(report):
        nonlocal bar
        if args.no_progress:
            if report["val_accuracy"] is not None:
                print_fn(f"step {report['step']}: loss {report['loss']:.4f}, "
                         f"validation accuracy {report['val_accuracy']:.3f}")
            return
        if bar is None:
            bar = tqdm(total=report["steps"], initial=report["step"] - 1, unit="step", dynamic_ncols=True)
        bar.update(1)
        bar.set_postfix(loss=f"{report['loss']:.3f}", tok_s=f"{report['tokens_per_s']:.0f}")

    try:
        result = train(args.task, steps=args.steps, seed=args.seed, out_dir=out_dir, resume=args.resume,
                       eval_every=args.eval_every, on_step=on_step)
    finally:
        if bar is not None:
            bar.close()
    if result["start_step"]:
        print_fn(f"resumed {os.path.join(out_dir, 'model.npz')} at step {result['start_step']}")
    matplotlib.use("Agg")
    plots.save(plots.training_run(result["history"], args.task), os.path.join(out_dir, "loss.png"))
    if args.export:
        with writing("--export", args.export):
            export_trained(os.path.join(out_dir, "model.npz"), args.export, args.task)
        print_fn(f"wrote {args.export}")
    print_fn(json.dumps(result["test"]))
    return 0
