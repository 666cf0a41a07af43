r"""Decoding: the KV cache (``cache``), a batch's decoding state for either kind of model (``sessions``), and
the search that turns logits into tokens — greedy, sampled, beam (``search``).  Imports only from ``core``
and ``model``.
"""

from .cache import LayerCache, cache_nbytes, new_cache
from .search import beam_search, check_sampling, greedy, length_penalty, next_token_probs, sample
from .sessions import LMSession, Seq2SeqSession

__all__ = ["LMSession", "LayerCache", "Seq2SeqSession", "beam_search", "cache_nbytes", "check_sampling", "greedy",
           "length_penalty", "new_cache", "next_token_probs", "sample"]
