"""Training in NumPy: the loop, evaluation, and training checkpoints that resume bit for bit.

A training checkpoint (.npz, no pickle, written atomically) holds the params, the Adam moments, the step, the
data and dropout generator's state and the loss history, so a stopped run resumed from it continues exactly as
an uninterrupted one.  The loop prints nothing: it reports each step to an ``on_step`` callback and returns
its history and metrics (the command line draws the progress bar and the loss curve).
"""

from __future__ import annotations

import json
import math
import os
import time

import numpy as np

from ..core.checks import check_positive_int
from ..core.nn import cross_entropy_forward
from ..core.tree import count_params, flatten, unflatten
from ..decoding.search import greedy
from ..decoding.sessions import Seq2SeqSession
from ..model.checkpoint import load_checkpoint, read_extras, save_checkpoint, write_json
from ..model.config import TransformerConfig
from ..model.losses import classifier_loss, lm_loss, transformer_loss
from ..model.models import DecoderLM, Transformer, classifier_logits, lm_logits
from ..model.params import init_params, param_shapes
from .optim import adam_init, adam_step, clip_by_global_norm, noam_lr
from .tasks import BOS, EOS, PAD, Tokenizer, get_task, is_negated, pad_batch

MAX_GRAD_NORM = 1.0


class NonFiniteLoss(RuntimeError):
    """Training produced a NaN or infinite loss; the last good checkpoint is kept."""


def loss_and_grads(task, params, batch, rng):
    if task.kind == "classify":
        ids, labels = batch
        return classifier_loss(params, ids, labels, task.config, rng, task.label_smoothing)
    src, tgt_in, tgt_out = batch
    return transformer_loss(params, src, tgt_in, tgt_out, task.config, rng, task.label_smoothing)


# --- checkpoints -----------------------------------------------------------------------------------
def save_training(path, task, params, opt, rng, history):
    extra = {f"opt/m/{k}": v for k, v in flatten(opt["m"]).items()}
    extra |= {f"opt/v/{k}": v for k, v in flatten(opt["v"]).items()}
    extra["step"] = np.array(opt["step"])
    extra["task"] = np.array(task.name)
    extra["rng"] = np.array(json.dumps(rng.bit_generator.state))
    extra["history"] = np.array(json.dumps(history))
    save_checkpoint(path, params, task.config, extra=extra)


def load_training(path, task):
    """(params, opt, rng, history) from a training checkpoint of this task; clear errors otherwise."""
    params, cfg = load_checkpoint(path)
    if cfg != task.config:
        raise ValueError(f"{path}: checkpoint config differs from task {task.name!r}'s model")
    extra = read_extras(path)
    if "task" not in extra or str(extra["task"]) != task.name:
        raise ValueError(f"{path}: not a training checkpoint of task {task.name!r} "
                         f"(task: {str(extra.get('task', 'none'))!r})")
    template = param_shapes(cfg)
    moments = {}
    for which in ("m", "v"):
        flat = {k[len(f"opt/{which}/"):]: v for k, v in extra.items() if k.startswith(f"opt/{which}/")}
        if set(flat) != set(flatten(template)) or not {"step", "rng", "history"} <= set(extra):
            raise ValueError(f"{path}: not a training checkpoint (no optimiser state): an exported model can be "
                             "loaded and evaluated, not resumed")
        moments[which] = unflatten(flat, template)
    m, v = moments["m"], moments["v"]
    rng = np.random.default_rng()
    rng.bit_generator.state = json.loads(str(extra["rng"]))
    return params, {"m": m, "v": v, "step": int(extra["step"])}, rng, json.loads(str(extra["history"]))


# --- evaluation ------------------------------------------------------------------------------------
def predict(task, params, inputs, batch_size=250):
    """Model outputs for input texts: decoded strings (seq2seq, greedy with the KV cache) or labels."""
    out = []
    for start in range(0, len(inputs), batch_size):
        chunk = inputs[start:start + batch_size]
        if task.kind == "classify":
            ids = pad_batch([task.tokenizer.encode(x) for x in chunk], pad=PAD)
            out += [int(i) for i in np.argmax(classifier_logits(params, ids, task.config)[0], axis=-1)]
        else:
            model = Transformer.from_config(task.config, params)
            sources = [task.tokenizer.encode(x) for x in chunk]
            n = min(task.config.max_len - 1, max(map(len, sources)) + 4)
            tokens = greedy(Seq2SeqSession(model, sources, bos_id=BOS), n, eos_id=EOS)
            out += [task.tokenizer.decode(t) for t in tokens]
    return out


def evaluate(task, params, examples):
    """Exact-match accuracy (seq2seq) or accuracy (classify); for classify also accuracy on negated inputs."""
    preds = predict(task, params, [x for x, _ in examples])
    right = [p == y for p, (_, y) in zip(preds, examples)]
    result = {"accuracy": float(np.mean(right)), "n": len(examples)}
    if task.kind == "classify":
        neg = [r for r, (x, _) in zip(right, examples) if is_negated(x)]
        result |= {"negated_accuracy": float(np.mean(neg)), "negated_n": len(neg)}
    return result


# --- the loop --------------------------------------------------------------------------------------
def train_step(task, params, opt, rng, lr=None):
    """One optimiser step on a random batch: the loss and its gradients, clipped to global norm
    ``MAX_GRAD_NORM``, then Adam at the paper's learning rate for this step (or at ``lr``, a fixed rate).
    Returns (params, opt, loss, batch)."""
    batch = task.sample(rng)
    loss, grads = loss_and_grads(task, params, batch, rng)
    loss = float(loss)
    if not math.isfinite(loss):
        raise NonFiniteLoss(f"step {opt['step'] + 1}: loss is {loss}")
    grads, _ = clip_by_global_norm(grads, MAX_GRAD_NORM)
    if lr is None:
        lr = noam_lr(opt["step"] + 1, task.config.d_model, task.warmup, task.lr_factor)
    params, opt = adam_step(params, grads, opt, lr)
    return params, opt, loss, batch


def fit(task, steps, seed=0):
    """Train ``task.config``'s model from ``init_params(config, seed)`` for ``steps`` steps in memory (no
    checkpoints, no evaluation): the same steps as :func:`train` with the same seed.  Returns (params, losses)."""
    check_positive_int("steps", steps)
    params = init_params(task.config, seed)
    opt, rng, losses = adam_init(params), np.random.default_rng(seed), []
    while opt["step"] < steps:
        params, opt, loss, _ = train_step(task, params, opt, rng)
        losses.append(loss)
    return params, losses


def train(task_name, steps=None, seed=0, out_dir=None, resume=False, eval_every=500, save_every=250,
          on_step=None):
    """Train a task's model; writes out_dir/model.npz (the training checkpoint, every ``save_every`` steps and
    at the end) and out_dir/metrics.json.  ``on_step(report)`` is called after every step with a dict: step,
    steps, loss, tokens_per_s, and val_accuracy at evaluation steps (else None).
    Returns the metrics dict, with the loss ``history`` and the step it started from (``start_step``)."""
    task = get_task(task_name)
    steps = check_positive_int("steps", steps if steps is not None else task.steps)
    check_positive_int("eval_every", eval_every)
    check_positive_int("save_every", save_every)
    out_dir = out_dir or os.path.join("runs", task_name)
    ckpt = os.path.join(out_dir, "model.npz")
    if resume and not os.path.exists(ckpt):
        raise ValueError(f"nothing to resume: {ckpt} does not exist (leave out resume to start afresh)")
    os.makedirs(out_dir, exist_ok=True)
    if resume:
        params, opt, rng, history = load_training(ckpt, task)
    else:
        params = init_params(task.config, seed)
        opt, rng, history = adam_init(params), np.random.default_rng(seed), {"step": [], "loss": [], "val": []}
    start = opt["step"]
    t0, tokens = time.perf_counter(), 0
    while opt["step"] < steps:
        try:
            params, opt, loss, batch = train_step(task, params, opt, rng)
        except NonFiniteLoss as e:
            raise NonFiniteLoss(f"{e}; stopped, {ckpt} keeps the last good state") from None
        history["step"].append(opt["step"])
        history["loss"].append(loss)
        tokens += int(np.sum(batch[0] != PAD))
        val = None
        if opt["step"] % eval_every == 0:  # a schedule of its own: stopping and resuming does not change it
            val = evaluate(task, params, task.val[:300])["accuracy"]
            history["val"].append([opt["step"], val])
        if opt["step"] % save_every == 0 or opt["step"] == steps:
            save_training(ckpt, task, params, opt, rng, history)
        if on_step is not None:
            on_step(dict(step=opt["step"], steps=steps, loss=loss, val_accuracy=val,
                         tokens_per_s=tokens / (time.perf_counter() - t0)))
    metrics = {"task": task_name, "steps": opt["step"], "train_seconds_this_run": time.perf_counter() - t0,
               "parameters": count_params(params), "test": evaluate(task, params, task.test)}
    write_json(metrics, os.path.join(out_dir, "metrics.json"))
    return metrics | {"history": history, "start_step": start}


# --- a character-level language model, trained in a minute ---------------------------------------------------
def train_char_lm(text, steps=600, context=64, batch_size=16, seed=0, d_model=64, n_layers=2, lr_factor=0.5,
                  warmup=100, positional_encoding=True, validation=0.1, eval_every=50, eval_windows=32,
                  on_step=None):
    """Train a decoder-only character-level LM on ``text`` (random windows of ``context`` characters, predicting
    each next character): Adam with the paper's schedule and clipping.

    The last ``validation`` fraction of the text is held out: every ``eval_every`` steps (and after the last) the
    mean next-character loss on ``eval_windows`` fixed windows of it is recorded.  ``positional_encoding=False``
    trains the same model without the sin-cos table (the ablation of chapter 8).  Returns (model, tokenizer,
    history) with history {"step", "loss": every step's training loss, "val": [(step, held-out loss)]}."""
    check_positive_int("steps", steps)
    check_positive_int("context", context)
    check_positive_int("eval_every", eval_every)
    check_positive_int("eval_windows", eval_windows)
    if not 0.0 <= validation < 1.0:
        raise ValueError(f"validation must be a fraction in [0, 1), got {validation!r}")
    tok = Tokenizer(sorted(set(text)))
    data = np.array(tok.encode(text), np.int64)
    split = len(data) - int(round(validation * len(data)))
    train, held = data[:split], data[split:]
    if len(train) <= context + 1:
        raise ValueError(f"text must be longer than context + 1 = {context + 1} characters (after holding out "
                         f"{validation:.0%} for validation), got {len(train)}")
    if validation and len(held) <= context + 1:
        raise ValueError(f"the held-out {validation:.0%} of the text ({len(held)} characters) must be longer than "
                         f"context + 1 = {context + 1}; pass a larger validation fraction or validation=0")
    cfg = TransformerConfig(d_model=d_model, n_heads=4, n_encoder_layers=0, n_decoder_layers=n_layers,
                            d_ff=4 * d_model, vocab_size=len(tok), max_len=context, norm_first=True,
                            activation="gelu", architecture="decoder-only", dropout=0.0,
                            positional_encoding=positional_encoding)
    params = init_params(cfg, seed)
    rng, opt = np.random.default_rng(seed), adam_init(params)
    history = {"step": [], "loss": [], "val": []}
    if validation:  # the same held-out windows at every evaluation
        val_starts = np.random.default_rng(seed + 1).integers(0, len(held) - context - 1, eval_windows)
        val_windows = held[val_starts[:, None] + np.arange(context + 1)]
    for step in range(1, steps + 1):
        starts = rng.integers(0, len(train) - context - 1, batch_size)
        windows = train[starts[:, None] + np.arange(context + 1)]  # (B, context + 1)
        loss, grads = lm_loss(params, windows[:, :-1], windows[:, 1:], cfg)
        grads, _ = clip_by_global_norm(grads, MAX_GRAD_NORM)
        params, opt = adam_step(params, grads, opt, noam_lr(step, d_model, warmup, lr_factor))
        history["step"].append(step)
        history["loss"].append(float(loss))
        if validation and (step % eval_every == 0 or step == steps):
            history["val"].append((step, next_token_loss(params, val_windows, cfg)))
        if on_step is not None:
            on_step(step, float(loss))
    return DecoderLM(cfg, params), tok, history


def next_token_loss(params, windows, cfg):
    """Mean cross-entropy (nats) of a decoder-only LM's next-token predictions on ``windows`` (B, T + 1): the
    forward pass alone, for held-out text."""
    logits = lm_logits(params, windows[:, :-1], cfg)[0]
    return float(cross_entropy_forward(logits.astype(np.float64), windows[:, 1:])[0])
