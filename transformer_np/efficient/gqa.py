r"""Multi-head → grouped-query (or multi-query) attention, by conversion and short uptraining (Ainslie et al. 2023).

A trained multi-head model has H key heads and H value heads per attention layer.  To serve it with a KV cache
H / H_kv times smaller, each group of G = H / H_kv consecutive heads gets one key head and one value head: the
**mean** of the group's projection heads (columns of W_K, W_V and their biases),

    W_K^{(j)} = (1/G) Σ_{h in group j} W_K^{(h)},        likewise W_V and the biases,

which keeps what the group's heads have in common.  The converted model is close to the original but not equal;
a few hundred steps of the original training ("uptraining", a few percent of it) recover most of the accuracy.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..core.checks import check_positive_int
from ..decoding.cache import kv_cache_bytes
from ..training.loop import evaluate, train_step
from ..training.optim import adam_init, noam_lr


def mean_pool_heads(w, n_heads, n_kv_heads):
    """(C_in, H·D) projection columns -> (C_in, H_kv·D): each group of H / H_kv heads averaged.  Biases (H·D,)
    likewise."""
    D = w.shape[-1] // n_heads
    G = n_heads // n_kv_heads
    grouped = w.reshape(*w.shape[:-1], n_kv_heads, G, D)  # head h = j·G + g
    return grouped.mean(axis=-2).reshape(*w.shape[:-1], n_kv_heads * D)


def mha_to_gqa(params, cfg, n_kv_heads):
    """(params, config) of cfg's model with n_kv_heads key/value heads in every attention layer, each the mean of
    its group's heads.  n_kv_heads = 1 gives multi-query attention; = n_heads the model unchanged."""
    check_positive_int("n_kv_heads", n_kv_heads)
    if cfg.n_heads % n_kv_heads or cfg.kv_heads != cfg.n_heads:
        raise ValueError(f"n_kv_heads must divide n_heads={cfg.n_heads} of a multi-head model, got {n_kv_heads} "
                         f"(the model has {cfg.kv_heads} K/V heads)")
    new_cfg = dataclasses.replace(cfg, n_kv_heads=None if n_kv_heads == cfg.n_heads else n_kv_heads)

    def convert(tree):
        if isinstance(tree, dict):
            if {"w_k", "w_v"} <= set(tree):
                out = dict(tree)
                for name in ("w_k", "b_k", "w_v", "b_v"):
                    if tree.get(name) is not None:
                        out[name] = mean_pool_heads(tree[name], cfg.n_heads, n_kv_heads).astype(tree[name].dtype)
                return out
            return {k: convert(v) for k, v in tree.items()}
        if isinstance(tree, list):
            return [convert(v) for v in tree]
        return tree

    return convert(params), new_cfg


def kv_cache_bytes_per_token(cfg, itemsize=4):
    """2 · (decoder self-attention layers) · H_kv · D · bytes: what each generated token adds to the cache."""
    return kv_cache_bytes(cfg.n_decoder_layers, cfg.kv_heads, cfg.d_head, 1, itemsize)


def uptrain(task, params, cfg, steps, seed=0, lr_factor=None):
    """Continue training a converted model on its task for ``steps`` steps (Adam, the task's schedule taken at
    its end — the model is already trained — and gradient clipping).  Returns (params, losses)."""
    check_positive_int("steps", steps)
    task = dataclasses.replace(task, config=cfg)
    rng = np.random.default_rng(seed)
    opt = adam_init(params)
    losses = []
    factor = task.lr_factor if lr_factor is None else lr_factor
    lr = noam_lr(task.warmup * 4, cfg.d_model, task.warmup, factor)  # the decayed rate of a trained model
    for _ in range(steps):
        params, opt, loss, _ = train_step(task, params, opt, rng, lr=lr)  # training's step, at that fixed rate
        losses.append(loss)
    return params, losses


def convert_and_uptrain(task, params, n_kv_heads, steps, n_eval=300, seed=0):
    """The trained model of ``task`` converted to n_kv_heads, evaluated before and after ``steps`` of uptraining.
    Returns a dict: KV bytes per token, accuracy of the original, of the converted and of the uptrained model."""
    cfg = task.config
    converted, new_cfg = mha_to_gqa(params, cfg, n_kv_heads)
    examples = task.test[:n_eval]
    row = dict(n_kv_heads=n_kv_heads, kv_bytes_per_token=kv_cache_bytes_per_token(new_cfg),
               original=evaluate(task, params, examples)["accuracy"],
               converted=evaluate(dataclasses.replace(task, config=new_cfg), converted, examples)["accuracy"])
    tuned, losses = uptrain(task, converted, new_cfg, steps, seed)
    row.update(uptrain_steps=steps, uptrained=evaluate(dataclasses.replace(task, config=new_cfg), tuned,
                                                        examples)["accuracy"],
               final_loss=float(np.mean(losses[-20:])))
    return row


__all__ = ["mha_to_gqa", "mean_pool_heads", "uptrain", "convert_and_uptrain", "kv_cache_bytes_per_token"]
