r"""Efficient inference — the second half of the source document — each technique a formula, a test against
the plain path and a measured trade-off:

``blockwise``    attention with the online softmax: tiles, never the T×T scores (FlashAttention's idea)
``paged``        the paged KV cache: blocks of 16 tokens, block tables, sharing with copy-on-write (vLLM)
``serve``        continuous batching on the paged cache: the batch re-formed at every step (Orca)
``speculative``  speculative decoding: a draft proposes, the target verifies in one pass, exactly
``gqa``          multi-head → grouped-query attention by mean-pooling K/V heads, then uptraining

``quantize``     int8/int4 per tensor, channel or group; weight-only, W8A8, LLM.int8(), SmoothQuant
``kv_int8``      the int8 KV caches
``head_pruning`` MiniLM's attention heads pruned by gate gradient and by ablation
``precision``    float16, bfloat16, float8 storage (any array library) and the operations that must stay float32
``prune``        magnitude, n:m, Wanda masks; a head zeroed in W_O
``quality``      perplexity on the shipped evaluation text, activation statistics; ``compress``: every recipe
``cost_model``   Pope et al.'s arithmetic: FLOPs, bytes, the roofline, KV memory per chip, Table 1
``simulated_partitioning``  Pope et al.'s partitioning layouts on simulated chips, each collective's bytes counted
``tensor_parallel_mpi``     tensor-parallel inference for real, over MPI (mpi4py, imported only when run)
``hyperparams``  what d_model, heads, layers and d_ff cost (the cost model) and buy (a training sweep)

Only the first five are imported with the package; the others are imported by name
(``from transformer_np.efficient import quantize``).  Imports from ``core``, ``model``, ``decoding`` and
``training``.
"""

from . import blockwise, gqa, paged, serve, speculative

__all__ = ["blockwise", "gqa", "paged", "serve", "speculative"]
