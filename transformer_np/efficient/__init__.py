r"""Efficient inference — the second half of the source document — each technique a formula, a test against
the plain path and a measured trade-off.  The modules land here with their issues: quantization, mixed
precision, pruning, blockwise attention, the paged KV cache, speculative decoding, the cost model of inference
at scale and tensor-parallel inference.  Imports from ``core``, ``model``, ``decoding`` and ``training``.
"""
