r"""Decoding: the KV cache (``cache``), a batch's decoding state for either kind of model (``sessions``), and
the search that turns logits into tokens — greedy, sampled, beam (``search``).  Imports only from ``core``
and ``model``.
"""

from .cache import KVCache, LayerCache, LayerKVCache, WindowCache, contiguous_cache, model_cache, new_cache
from .search import beam_search, check_sampling, greedy, length_penalty, next_token_probs, sample
from .sessions import LMSession, Seq2SeqSession

__all__ = ["KVCache", "LMSession", "LayerCache", "LayerKVCache", "Seq2SeqSession", "WindowCache", "beam_search",
           "check_sampling", "contiguous_cache", "greedy", "length_penalty", "model_cache", "new_cache",
           "next_token_probs", "sample"]
