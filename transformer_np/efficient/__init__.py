r"""Efficient inference — the second half of the source document — each technique a formula, a test against
the plain path and a measured trade-off:

``blockwise``    attention with the online softmax: tiles, never the T×T scores (FlashAttention's idea)
``paged``        the paged KV cache: blocks of 16 tokens, block tables, sharing with copy-on-write (vLLM)
``serve``        continuous batching on the paged cache: the batch re-formed at every step (Orca)
``speculative``  speculative decoding: a draft proposes, the target verifies in one pass, exactly
``gqa``          multi-head → grouped-query attention by mean-pooling K/V heads, then uptraining

Quantization, mixed precision, pruning, the cost model of inference at scale and tensor-parallel inference
land here with their issues.  Imports from ``core``, ``model``, ``decoding`` and ``training``.
"""

from . import blockwise, gqa, paged, serve, speculative

__all__ = ["blockwise", "gqa", "paged", "serve", "speculative"]
