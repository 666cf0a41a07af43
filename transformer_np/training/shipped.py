"""The trained models that ship with the package (``training/checkpoints/NAME.npz``): params, config, task name,
loss history and test metrics — no optimiser state — written by :func:`export_trained` from a finished run and
read by :func:`load_trained`.  Each also loads as a plain model with ``transformer_np.load_model``.
"""

from __future__ import annotations

import json
import os

import numpy as np

from ..model.checkpoint import load_checkpoint, read_extras, save_checkpoint
from .loop import evaluate, load_training
from .tasks import get_task

CHECKPOINTS = os.path.join(os.path.dirname(__file__), "checkpoints")


def shipped_path(name):
    """Where the shipped model of task ``name`` lies."""
    return os.path.join(CHECKPOINTS, f"{name}.npz")


def export_trained(training_ckpt, path, task_name):
    """Write the shippable form of a finished run (a third of the training checkpoint's size).
    Returns its test metrics."""
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
    """(task, params, history, test metrics) of a shipped trained model."""
    task = get_task(name)
    path = path or shipped_path(name)
    params, _ = load_checkpoint(path, task.config)
    extra = read_extras(path)
    if str(extra.get("task")) != name:
        raise ValueError(f"{path}: holds task {str(extra.get('task'))!r}, not {name!r}")
    history = {"step": extra["history_step"].tolist(), "loss": extra["history_loss"].tolist(),
               "val": extra["history_val"].tolist()}
    return task, params, history, json.loads(str(extra["test"]))
