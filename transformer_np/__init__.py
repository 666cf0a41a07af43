r"""transformer_np — the Transformer's math as plain NumPy functions, verified three ways.

Shape vocabulary, used on every line that makes a tensor:

    B batch · T target length · S source length · C = d_model · H heads · D = d_head = C/H
    V vocabulary · F = d_ff · L layers

Masks are boolean and mean **True where query t may attend to key s**; they broadcast to (B, H, T, S).
Every function takes its array library from its inputs (NumPy, CuPy, torch, any array-API library) and
keeps their dtype; parameters are nested dicts of arrays (the params tree).

The package has floors; each folder imports only from the folders above it in this list:

    core        the formulas, forward and backward side by side (nn, attention, masks, embeddings),
                their loop-level references, the array-library backend, params-tree helpers, input checks
    model       config, params trees, layers, stacks, losses, checkpoints, the models
    decoding    KV cache, decoding sessions, greedy / sampled / beam search
    training    Adam and its schedule, the offline tasks, the training loop, the shipped trained models
    efficient   efficient inference: blockwise attention, paged KV cache, continuous batching,
                speculative decoding, MHA -> GQA conversion, quantization, mixed precision, pruning,
                the cost model, partitioning layouts, tensor parallelism over MPI
    pretrained  real pretrained models from their own files: safetensors, WordPiece, MiniLM
    interop     torch <-> NumPy (torch imported only when called)
    viz         plots and the figures of figures/        teaching   the tour and the exercise checkers
    cli         ``python -m transformer_np ...``
"""

import importlib
import os
import sys

# OpenBLAS's idle threads spin for 2^28 clock cycles (~0.1 s) after each matrix product, taking the cores that the
# element-wise kernels of core.fast run on next (measured: GELU after a product 11 ms instead of 5-7 ms).
# 2^12 cycles is plenty between the products of a forward.  Only where NumPy is not imported yet (OpenBLAS reads
# it once, when it loads) and the variable is not set already: `import transformer_np` before NumPy gets it.
if "numpy" not in sys.modules:
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "12")

from . import core, decoding, efficient, interop, model, pretrained, training
from .core import (
    causal_mask,
    combine_masks,
    count_params,
    feed_forward,
    gelu,
    layer_norm,
    learned_positional_embedding,
    linear,
    log_softmax,
    merge_heads,
    multi_head_attention,
    padding_mask,
    project_kv,
    relu,
    residual,
    scaled_dot_product_attention,
    sinusoidal_positional_encoding,
    softmax,
    split_heads,
    to_backend,
    to_numpy,
    token_embedding,
)
from .model import (
    Classifier,
    DecoderLM,
    Transformer,
    TransformerConfig,
    classifier_logits,
    decoder,
    decoder_layer,
    encoder,
    encoder_layer,
    init_params,
    lm_logits,
    load_checkpoint,
    load_model,
    save_checkpoint,
    transformer_logits,
)
from .pretrained import load

__version__ = "0.2.0"

__all__ = [
    "Classifier", "DecoderLM", "Transformer", "TransformerConfig", "causal_mask", "classifier_logits",
    "combine_masks", "core", "count_params", "decoder", "decoder_layer", "decoding", "efficient", "encoder",
    "encoder_layer", "feed_forward", "gelu", "init_params", "interop", "layer_norm", "learned_positional_embedding",
    "linear", "lm_logits", "load", "load_checkpoint", "load_model", "log_softmax", "merge_heads", "model",
    "multi_head_attention", "padding_mask", "pretrained", "project_kv", "relu", "residual", "save_checkpoint",
    "scaled_dot_product_attention", "sinusoidal_positional_encoding", "softmax", "split_heads", "to_backend",
    "to_numpy", "token_embedding", "training", "transformer_logits",
]

# imported on first use: they pull in matplotlib (viz, cli) or are rarely needed by library users
_LAZY = ("viz", "teaching", "cli")
def __getattr__(name):
    if name in _LAZY:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'transformer_np' has no attribute {name!r}")
