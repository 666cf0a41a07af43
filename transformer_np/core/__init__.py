r"""The formulas: every equation of the Transformer as a plain function, forward and backward side by side.

``nn`` (linear, activations, softmax, layer norm, residual, FFN, dropout, pooling, cross-entropy),
``attention`` (scaled dot-product and multi-head), ``masks``, ``embeddings`` (token embedding, sin-cos and
learned positions); ``reference`` holds a loop-level version of each, written straight from the equation.
``backend`` is the one place that knows about array libraries, ``fast`` the NumPy float32 kernels (erf, GELU,
softmax over cache-sized pieces) that ``nn`` calls, ``tree`` the params-tree helpers, ``checks`` the input checks
shared by the public functions.  This folder imports nothing else from the package.
"""

from .attention import (
    additive_attention,
    merge_heads,
    multi_head_attention,
    project_kv,
    scaled_dot_product_attention,
    split_heads,
)
from .backend import to_backend, to_numpy
from .embeddings import learned_positional_embedding, sinusoidal_positional_encoding, token_embedding
from .masks import causal_mask, combine_masks, padding_keys, padding_mask
from .nn import feed_forward, gelu, layer_norm, linear, log_softmax, mean_pool, relu, residual, softmax
from .tree import count_params, flatten, tree_map, unflatten

__all__ = [
    "additive_attention", "causal_mask", "combine_masks", "count_params", "feed_forward", "flatten", "gelu",
    "layer_norm",
    "learned_positional_embedding", "linear", "log_softmax", "mean_pool", "merge_heads", "multi_head_attention",
    "padding_keys", "padding_mask", "project_kv", "relu", "residual", "scaled_dot_product_attention",
    "sinusoidal_positional_encoding", "softmax", "split_heads", "to_backend", "to_numpy", "token_embedding",
    "tree_map", "unflatten",
]
