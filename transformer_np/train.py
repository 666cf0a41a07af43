"""Training in NumPy: the loop, evaluation, checkpoints that resume bit for bit, and ``python -m transformer_np
train``.

A checkpoint (.npz, no pickle, written atomically) holds the params, the Adam moments, the step, the data
and dropout generator's state and the loss history, so a stopped run resumed from it continues exactly as an
uninterrupted one.
"""

from __future__ import annotations

import json
import math
import os
import time

import numpy as np

from .config import TransformerConfig
from .generate import Seq2SeqSession, greedy
from .model import Transformer, classifier_forward, classifier_loss, init_params, param_shapes, transformer_loss
from .optim import adam_init, adam_step, clip_by_global_norm, noam_lr
from .params import CONFIG_KEY, flatten, save_checkpoint, unflatten, write_json
from .tasks import EOS, get_task, is_negated

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
    from .params import load_checkpoint

    params, cfg = load_checkpoint(path)
    if cfg != task.config:
        raise ValueError(f"{path}: checkpoint config differs from task {task.name!r}'s model")
    with np.load(path, allow_pickle=False) as data:
        extra = {k[len(CONFIG_KEY) + len("extra/"):]: data[k] for k in data.files
                 if k.startswith(f"{CONFIG_KEY}extra/")}
    if "task" not in extra or str(extra["task"]) != task.name:
        raise ValueError(f"{path}: not a training checkpoint of task {task.name!r} "
                         f"(task: {str(extra.get('task', 'none'))!r})")
    template = param_shapes(cfg)
    m = unflatten({k[6:]: v for k, v in extra.items() if k.startswith("opt/m/")}, template)
    v = unflatten({k[6:]: v for k, v in extra.items() if k.startswith("opt/v/")}, template)
    rng = np.random.default_rng()
    rng.bit_generator.state = json.loads(str(extra["rng"]))
    return params, {"m": m, "v": v, "step": int(extra["step"])}, rng, json.loads(str(extra["history"]))


def export_trained(training_ckpt, path, task_name):
    """Write the shippable form of a finished run: params, config, task name, loss history and test metrics —
    no optimiser state (a third of the size)."""
    task = get_task(task_name)
    params, _, _, history = load_training(training_ckpt, task)
    metrics = evaluate(task, params, task.test)
    val = np.array(history["val"], dtype=np.float64).reshape(-1, 2)
    save_checkpoint(path, params, task.config, extra={
        "task": np.array(task.name), "test": np.array(json.dumps(metrics)),
        "history_step": np.array(history["step"], np.int32), "history_loss": np.array(history["loss"], np.float32),
        "history_val": val})
    return metrics


def load_trained(name, path=None):
    """(task, params, history, test metrics) of a shipped trained model (transformer_np/checkpoints/NAME.npz)."""
    from .params import load_checkpoint

    task = get_task(name)
    path = path or os.path.join(os.path.dirname(__file__), "checkpoints", f"{name}.npz")
    params, cfg = load_checkpoint(path, task.config)
    with np.load(path, allow_pickle=False) as data:
        extra = {k.split("/", 1)[1]: data[k] for k in data.files if k.startswith(f"{CONFIG_KEY}extra/")}
    if str(extra.get("task")) != name:
        raise ValueError(f"{path}: holds task {str(extra.get('task'))!r}, not {name!r}")
    history = {"step": extra["history_step"].tolist(), "loss": extra["history_loss"].tolist(),
               "val": extra["history_val"].tolist()}
    return task, params, history, json.loads(str(extra["test"]))


# --- evaluation ------------------------------------------------------------------------------------
def predict(task, params, inputs, batch_size=250):
    """Model outputs for input texts: decoded strings (seq2seq, greedy with the KV cache) or labels."""
    out = []
    for start in range(0, len(inputs), batch_size):
        chunk = inputs[start:start + batch_size]
        if task.kind == "classify":
            from .tasks import pad_batch

            ids = pad_batch([task.tokenizer.encode(x) for x in chunk])
            out += [int(i) for i in np.argmax(classifier_forward(params, ids, task.config)[0], axis=-1)]
        else:
            model = Transformer.from_config(task.config, params)
            sources = [task.tokenizer.encode(x) for x in chunk]
            n = min(task.config.max_len - 1, max(map(len, sources)) + 4)
            tokens = greedy(Seq2SeqSession(model, sources, bos_id=1), n, eos_id=EOS)
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
def train(task_name, steps=None, seed=0, out_dir=None, resume=False, eval_every=500, save_every=250,
          progress=True, export=None, print_fn=print):
    """Train a task's model; writes out_dir/model.npz (checkpoint), loss.png and metrics.json, and with
    ``export`` the shippable model file (see export_trained).  Returns the metrics dict."""
    task = get_task(task_name)
    steps = steps if steps is not None else task.steps
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    out_dir = out_dir or os.path.join("runs", task_name)
    os.makedirs(out_dir, exist_ok=True)
    ckpt = os.path.join(out_dir, "model.npz")
    if resume and os.path.exists(ckpt):
        params, opt, rng, history = load_training(ckpt, task)
        print_fn(f"resumed {ckpt} at step {opt['step']}")
    else:
        params = init_params(task.config, seed)
        opt, rng, history = adam_init(params), np.random.default_rng(seed), {"step": [], "loss": [], "val": []}
    bar = _progress(progress, opt["step"], steps)
    t0, tokens = time.perf_counter(), 0
    while opt["step"] < steps:
        batch = task.sample(rng)
        loss, grads = loss_and_grads(task, params, batch, rng)
        loss = float(loss)
        if not math.isfinite(loss):
            raise NonFiniteLoss(f"step {opt['step'] + 1}: loss is {loss}; stopped, {ckpt} keeps the last good state")
        grads, norm = clip_by_global_norm(grads, MAX_GRAD_NORM)
        lr = noam_lr(opt["step"] + 1, task.config.d_model, task.warmup, task.lr_factor)
        params, opt = adam_step(params, grads, opt, lr)
        history["step"].append(opt["step"])
        history["loss"].append(loss)
        tokens += int(np.sum(batch[0] != 0))
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{tokens / (time.perf_counter() - t0):.0f}")
        if opt["step"] % eval_every == 0:  # a schedule of its own: stopping and resuming does not change it
            val = evaluate(task, params, task.val[:300])
            history["val"].append([opt["step"], val["accuracy"]])
            if bar is None:
                print_fn(f"step {opt['step']}: loss {loss:.4f}, validation accuracy {val['accuracy']:.3f}")
        if opt["step"] % save_every == 0 or opt["step"] == steps:
            save_training(ckpt, task, params, opt, rng, history)
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - t0
    metrics = {"task": task_name, "steps": opt["step"], "train_seconds_this_run": seconds,
               "parameters": int(sum(math.prod(a.shape) for a in flatten(params).values())),
               "test": evaluate(task, params, task.test)}
    write_json(metrics, os.path.join(out_dir, "metrics.json"))
    if export:
        export_trained(ckpt, export, task_name)
    _plot_loss(history, os.path.join(out_dir, "loss.png"), task_name)
    print_fn(json.dumps(metrics["test"]))
    return metrics


def _progress(enabled, start, total):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=start, unit="step", dynamic_ncols=True)


def _plot_loss(history, path, name):
    import matplotlib

    matplotlib.use("Agg")
    from . import viz

    viz.save(viz.training_run(history, name), path)


__all__ = ["train", "evaluate", "predict", "save_training", "load_training", "NonFiniteLoss", "TransformerConfig"]
