"""``python -m transformer_np figures``: every PNG in figures/, drawn deterministically.

Each entry of :data:`FIGURES` builds its data from fixed seeds and draws it with a function of ``plots``; the
notebooks call the same functions, so the pictures in the README and in the chapters are one and the same.
"""

from __future__ import annotations

import os

import numpy as np

from ..core.attention import scaled_dot_product_attention
from ..core.embeddings import sinusoidal_positional_encoding
from ..core.masks import causal_mask, combine_masks, padding_mask
from ..core.nn import layer_norm
from ..core.tree import flatten
from ..model.config import TransformerConfig
from ..model.layers import encoder_layer
from ..model.models import Transformer, classifier_logits
from ..model.params import init_params
from ..model.stacks import encoder_backward, encoder_forward
from ..training.loop import predict
from ..training.shipped import load_trained
from . import diagrams, plots

SENTENCE = ["the", "cat", "sat", "on", "the", "mat"]


def sentence_embeddings(tokens=SENTENCE, d=16, seed=0):
    """A random unit-variance vector per distinct word: equal words get equal vectors."""
    rng = np.random.default_rng(seed)
    vocab = {w: rng.standard_normal(d) for w in dict.fromkeys(tokens)}
    return np.stack([vocab[w] for w in tokens])[None]  # (1, T, d)


def residual_norms_through_stack(n_layers=6, seed=0, T=16):
    """Mean token norm of the residual stream after each of n_layers encoder layers, post-LN and pre-LN."""
    out = {}
    for norm_first in (False, True):
        cfg = TransformerConfig(d_model=64, n_heads=4, n_encoder_layers=n_layers, n_decoder_layers=0, d_ff=128,
                                vocab_size=1, norm_first=norm_first, dtype="float64")
        params = init_params(cfg, seed)["encoder"]
        x = np.random.default_rng(seed).standard_normal((1, T, 64))  # the same input for both
        norms = [float(np.linalg.norm(x, axis=-1).mean())]
        for lp in params["layers"]:
            x, _ = encoder_layer(x, lp, cfg)
            norms.append(float(np.linalg.norm(x, axis=-1).mean()))
        out["pre-LN: x + f(LN(x)) grows" if norm_first else "post-LN: LN(x + f(x)) stays at √C"] = norms
    return out


def gradient_norms_through_stack(n_layers=12, seed=0, T=16):
    """Gradient norm of each layer's parameters at initialisation, post-LN and pre-LN, for the loss
    L = Σ y ⊙ g with g a fixed random direction (the same for both) on the stack's output y."""
    out = {}
    for norm_first in (False, True):
        cfg = TransformerConfig(d_model=64, n_heads=4, n_encoder_layers=n_layers, n_decoder_layers=0, d_ff=256,
                                vocab_size=1, norm_first=norm_first, dtype="float64")
        params = init_params(cfg, seed)["encoder"]
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((4, T, 64))
        y, _, cache = encoder_forward(x, params, cfg)
        _, grads = encoder_backward(rng.standard_normal(y.shape) / np.sqrt(y.size), cache, params, cfg)
        norms = [float(np.sqrt(sum(np.sum(a * a) for a in flatten(g).values()))) for g in grads["layers"]]
        out["pre-LN: x + f(LN(x))" if norm_first else "post-LN: LN(x + f(x))"] = norms
    return out


def tiny_translation_attention(seed=0):
    """The source document's model at a small size, random weights, on token ids 1-5 and 1, 6-8: its attention
    maps (labelled by token id: an untrained model translates nothing)."""
    model = Transformer(d_model=32, nhead=4, num_layers=2, num_classes=16, d_ff=64, max_len=32, seed=seed)
    src, tgt = np.array([[1, 2, 3, 4, 5]]), np.array([[1, 6, 7, 8]])
    _, attention = model.forward_with_attention(src, tgt)
    return attention, [f"id {i}" for i in src[0]], [f"id {i}" for i in tgt[0]]


def trained_dates_attention(text="the 3rd of March, 2021"):
    """The shipped dates model on text: its attention maps, the input's characters, the decoder's queries labelled
    by the character each predicts, and its keys (<s> and the output so far)."""
    task, params, _, _ = load_trained("dates")
    out = predict(task, params, [text])[0]
    model = Transformer.from_config(task.config, params)
    src = np.array([task.tokenizer.encode(text)])
    tgt = np.array([task.tokenizer.encode(out, bos=True)])
    _, attention = model.forward_with_attention(src, tgt)
    return attention, list(text), [f"→{c}" for c in out] + ["→</s>"], ["<s>"] + list(out), out


def trained_sentiment_heads(sentence="the plot was not bad at all"):
    """The shipped sentiment classifier's last-layer attention weights (H, T, T) on a sentence, and its words."""
    task, params, _, _ = load_trained("sentiment")
    ids = np.array([task.tokenizer.encode(sentence)])
    _, weights = classifier_logits(params, ids, task.config, need_weights=True)
    return weights[-1][0], sentence.split()


def _pe_heatmap():
    return plots.positional_encoding_heatmap(sinusoidal_positional_encoding(100, 64))


def _pe_waves():
    return plots.positional_encoding_waves(sinusoidal_positional_encoding(100, 64))


def _pe_similarity():
    return plots.positional_similarity(sinusoidal_positional_encoding(64, 64, dtype=np.float64))


def _attention_weights():
    x = sentence_embeddings()
    _, w = scaled_dot_product_attention(x, x, x)
    title = "softmax(QKᵀ/√d) with Q = K = V = word vectors:\nequal words attend to each other"
    return plots.attention_weights(w[0], SENTENCE, SENTENCE, title=title)


def _masks():
    pad = padding_mask(np.array([4]), max_len=6)[0, 0]  # (1, 6): the last two keys are padding
    return plots.masks({"causal (lower triangle)": causal_mask(6),
                      "padding: 4 real tokens": np.broadcast_to(pad, (6, 6)),
                      "causal AND padding": combine_masks(causal_mask(6), pad)})


def _head_grid():
    weights, words = trained_sentiment_heads()
    return plots.head_grid(weights, words, words,
                           title="The trained sentiment classifier, last layer: four heads, four patterns")


def _residual_norms():
    return plots.residual_stream_norms(residual_norms_through_stack())


def _layer_norm_stats():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((512, 64)) * rng.uniform(0.2, 5, (512, 1)) + rng.normal(0, 3, (512, 1))
    return plots.layer_norm_statistics(x, layer_norm(x, np.ones(64), np.zeros(64)))


def _activations():
    return plots.activations()


def _encoder_decoder_attention():
    attention, src, queries, keys, out = trained_dates_attention()
    return plots.encoder_decoder_attention(attention, src, queries, head=None, tgt_keys=keys,
                                           title=f"The trained dates model (an encoder-decoder trained here): "
                                                 f"'the 3rd of March, 2021' -> {out}")


FIGURES = {
    "pe_heatmap": _pe_heatmap,
    "pe_waves": _pe_waves,
    "pe_similarity": _pe_similarity,
    "softmax_saturation": plots.softmax_saturation,
    "attention_weights": _attention_weights,
    "masks": _masks,
    "head_grid": _head_grid,
    "multi_head_shapes": diagrams.multi_head_shapes,
    "transformer_architecture": diagrams.transformer_architecture,
    "residual_blocks": diagrams.residual_blocks,
    "kv_cache_flow": diagrams.kv_cache_flow,
    "residual_norms": _residual_norms,
    "layer_norm_stats": _layer_norm_stats,
    "activations": _activations,
    "encoder_decoder_attention": _encoder_decoder_attention,
}


def make_figures(out_dir="figures", names=None):
    """Draw the figures (all, or those named) into out_dir as PNG; returns the paths written."""
    os.makedirs(out_dir, exist_ok=True)
    unknown = sorted(set(names or ()) - set(FIGURES))
    if unknown:
        raise ValueError(f"unknown figures {unknown}; known: {sorted(FIGURES)}")
    paths = []
    for name in names or FIGURES:
        path = os.path.join(out_dir, f"{name}.png")
        tmp = os.path.join(out_dir, f".{name}.tmp.png")
        plots.save(FIGURES[name](), tmp)
        os.replace(tmp, path)
        paths.append(path)
    return paths
