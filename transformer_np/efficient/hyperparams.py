r"""Choosing d_model, heads, layers and d_ff, answered with numbers — the source document's FAQ question.

Two halves, one per kind of answer:

* **What a hyper-parameter costs** (:func:`effects`): each of d_model (C), n_heads (H), n_kv_heads (H_kv),
  n_layers (L) and d_ff (F) changed on one model (SmolLM2-135M's shape by default) with the others held, and the
  cost model's parameters, FLOPs per token, KV-cache bytes per token and predicted prefill / decode times.
  Arithmetic only: no training, the same numbers on every machine.
* **What it buys** (:func:`train_row`, :func:`run_sweep`): the encoder-decoder of a shipped task (``reverse`` by
  default) trained here for a fixed number of steps over a grid of d_model × layers × heads (plus one grouped-query
  and one wider-FFN row), with its held-out exact-match accuracy, final training loss and training time.  The
  shipped table (``data/sweep_reverse.json``, written by ``python -m transformer_np sweep --json …``) is what the
  notebook reads, so it never retrains; a test re-runs its smallest row and compares.

The guide drawn from both, and from published scaling studies, is in chapter 12 and the README.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import numpy as np

from ..core.checks import check_positive_int
from ..core.tree import count_params
from ..training.loop import evaluate, fit
from ..training.tasks import get_task
from . import cost_model as cm

DATA = os.path.join(os.path.dirname(__file__), "data")
SWEEP_TABLE = os.path.join(DATA, "sweep_reverse.json")


# --- what each hyper-parameter costs (the cost model) ------------------------------------------------------------
def variants(shape):
    """(label, ModelShape) pairs: ``shape`` and one change at a time — C doubled and halved (H kept, so D = C/H
    follows), H doubled (C kept, so D halves and the K/V width H_kv·D with it), H_kv to 1 (multiquery) and to H
    (multi-head), L doubled and halved, F doubled and halved."""
    s, r = shape, dataclasses.replace
    out = [("base", s)]
    for f, tag in ((2, "×2"), (0.5, "÷2")):
        c = int(s.d_model * f)
        out.append((f"d_model {tag}", r(s, d_model=c, d_head=c // s.n_heads)))
    out.append(("n_heads ×2", r(s, n_heads=2 * s.n_heads, d_head=s.d_model // (2 * s.n_heads))))
    for kv in (1, s.n_heads):
        if kv != s.n_kv_heads:
            out.append((f"n_kv_heads = {kv}", r(s, n_kv_heads=kv)))
    out += [("n_layers ×2", r(s, n_layers=2 * s.n_layers)), ("n_layers ÷2", r(s, n_layers=max(1, s.n_layers // 2))),
            ("d_ff ×2", r(s, d_ff=2 * s.d_ff)), ("d_ff ÷2", r(s, d_ff=s.d_ff // 2))]
    return out


def effects(shape, hardware, context=2048, prefill_tokens=512, dtype="bfloat16"):
    """One row per :func:`variants` entry: parameters N, FLOPs per decoded token at ``context``, KV-cache bytes per
    token, weight bytes, and the roofline times of a ``prefill_tokens`` prefill and of a decode step at batch 1
    (weights and cache in ``dtype``) on ``hardware``."""
    rows = []
    for label, s in variants(shape):
        rows.append(dict(
            variant=label, d_model=s.d_model, n_heads=s.n_heads, n_kv_heads=s.n_kv_heads, d_head=s.d_head,
            n_layers=s.n_layers, d_ff=s.d_ff, params=cm.param_count(s), flops_per_token=cm.flops_per_token(s, context),
            kv_bytes_per_token=cm.kv_cache_bytes(s, 1, 1, dtype), weight_bytes=cm.weight_bytes(s, dtype),
            prefill_s=cm.prefill_cost(s, 1, prefill_tokens, hardware, dtype, dtype)[2],
            decode_s=cm.decode_cost(s, 1, context, hardware, dtype, dtype)[2]))
    return rows


# --- what each hyper-parameter buys (trained here) -------------------------------------------------------------
# the grid: d_model × layers (each stack) × heads, then two rows that change one thing of the (64, 2, 4) model,
# then two grid rows again from other seeds (the spread one seed leaves)
GRID = [dict(d_model=c, n_layers=n, n_heads=h) for c in (32, 64, 128) for n in (1, 2) for h in (1, 4)]
EXTRA = [dict(d_model=64, n_layers=2, n_heads=4, n_kv_heads=1), dict(d_model=64, n_layers=2, n_heads=4, d_ff=256)] \
    + [dict(d_model=c, n_layers=n, n_heads=h, seed=seed) for c, n, h in ((32, 1, 4), (64, 2, 1)) for seed in (1, 2)]
STEPS = 1000


def sweep_task(task_name, d_model, n_layers, n_heads, n_kv_heads=None, d_ff=None, seed=0):
    """The task with its model's config changed: C = d_model, L = n_layers in each stack (the encoder only for a
    classifier), H = n_heads, H_kv = n_kv_heads (None: H) and F = d_ff (None: 2·C, the shipped tasks' ratio)."""
    task = get_task(task_name, seed)
    cfg = task.config
    layers = dict(n_encoder_layers=n_layers, n_decoder_layers=0 if cfg.n_decoder_layers == 0 else n_layers)
    cfg = dataclasses.replace(cfg, d_model=d_model, n_heads=n_heads, n_kv_heads=n_kv_heads,
                              d_ff=2 * d_model if d_ff is None else d_ff, **layers)
    return dataclasses.replace(task, config=cfg)


def train_row(task_name="reverse", steps=STEPS, seed=0, **hp):
    """Train one configuration for ``steps`` steps (the task's batch size and learning-rate schedule; the
    schedule's d_model^-1/2 factor included) and evaluate it on the task's held-out test split.  Returns a dict:
    the hyper-parameters, parameters counted from the tree, test accuracy, the mean training loss of the last
    50 steps, and the measured training seconds (the only column that depends on the machine)."""
    check_positive_int("steps", steps)
    task = sweep_task(task_name, seed=seed, **hp)
    cfg = task.config
    t0 = time.perf_counter()
    params, losses = fit(task, steps, seed)
    seconds = time.perf_counter() - t0
    metrics = evaluate(task, params, task.test)
    return dict(task=task_name, steps=steps, seed=seed, d_model=cfg.d_model, n_layers=cfg.n_encoder_layers,
                n_heads=cfg.n_heads, n_kv_heads=cfg.kv_heads, d_ff=cfg.d_ff, params=count_params(params),
                accuracy=metrics["accuracy"], final_loss=float(np.mean(losses[-50:])), train_s=seconds)


def run_sweep(task_name="reverse", steps=STEPS, rows=None, seed=0, on_row=None):
    """:func:`train_row` for each hyper-parameter dict in ``rows`` (default: GRID + EXTRA; a dict's own "seed"
    overrides ``seed``); ``on_row(row)`` after each.  Returns the list of rows."""
    out = []
    for hp in (GRID + EXTRA if rows is None else rows):
        hp = dict(hp)
        out.append(train_row(task_name, steps, hp.pop("seed", seed), **hp))
        if on_row is not None:
            on_row(out[-1])
    return out


def load_sweep(path=SWEEP_TABLE):
    """The shipped sweep: {"command", "machine", "rows": [...]} (no training)."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def merge_rows(old, new):
    """``old`` rows with each row of ``new`` replacing the same run (:func:`same_row`) or appended."""
    out = [r for r in old if not any(same_row(r, n) for n in new)]
    return out + list(new)


def same_row(a, b):
    """Whether two rows are the same configuration and run (task, steps, seed and the hyper-parameters)."""
    keys = ("task", "steps", "seed", "d_model", "n_layers", "n_heads", "n_kv_heads", "d_ff")
    return all(a[k] == b[k] for k in keys)
