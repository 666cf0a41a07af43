r"""transformer_np — the Transformer's math as plain NumPy functions, verified three ways.

Shape vocabulary, used on every line that makes a tensor:

    B batch · T target length · S source length · C = d_model · H heads · D = d_head = C/H
    V vocabulary · F = d_ff · L layers

Masks are boolean and mean **True where query t may attend to key s**; they broadcast to (B, H, T, S).
Every function takes its array library from its inputs (NumPy, CuPy, torch, any array-API library) and
keeps their dtype; parameters are nested dicts of arrays (the params tree).

Modules beyond the formulas: ``generate`` (greedy, sampling, beam search, KV cache), ``train``, ``optim``
and ``tasks`` (training in NumPy), ``pretrained`` (all-MiniLM-L6-v2), ``interop`` (torch), ``viz`` and
``figures`` (plots), ``reference`` (loop-level versions of every formula).
"""

from .attention import merge_heads, multi_head_attention, project_kv, scaled_dot_product_attention, split_heads
from .backend import to_backend, to_numpy
from .config import TransformerConfig
from .embeddings import (
    learned_positional_embedding,
    sinusoidal_positional_encoding,
    token_embedding,
)
from .masks import causal_mask, combine_masks, padding_mask
from .model import (
    DecoderLM,
    Transformer,
    decoder,
    decoder_layer,
    encoder,
    encoder_layer,
    init_params,
    lm_forward,
    load_model,
    transformer_forward,
)
from .nn import feed_forward, gelu, layer_norm, linear, log_softmax, relu, residual, softmax
from .params import count_params, load_checkpoint, save_checkpoint

__version__ = "0.1.0"

__all__ = [
    "DecoderLM", "Transformer", "TransformerConfig", "causal_mask", "combine_masks", "count_params",
    "decoder", "decoder_layer", "encoder", "encoder_layer", "feed_forward", "gelu", "init_params",
    "layer_norm", "learned_positional_embedding", "linear", "lm_forward", "load_checkpoint", "load_model",
    "log_softmax", "merge_heads", "multi_head_attention", "padding_mask", "project_kv", "relu", "residual",
    "save_checkpoint", "scaled_dot_product_attention", "sinusoidal_positional_encoding", "softmax",
    "split_heads", "to_backend", "to_numpy", "token_embedding", "transformer_forward",
]
