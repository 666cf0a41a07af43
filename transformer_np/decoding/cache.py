r"""The KV cache: what a decoder keeps between generation steps so that each new token costs O(t), not O(t²).

At step t a causal self-attention layer needs K and V of every earlier position; they never change once
computed, so each layer keeps them and appends the new token's (k, v).  Cross-attention keys and values come
from the encoder memory, which is fixed: they are computed once.
"""

from __future__ import annotations

import dataclasses
import math

from ..core.backend import array_namespace, contiguous


@dataclasses.dataclass
class LayerCache:
    """One layer's cache: self-attention k, v of shape (B, H_kv, S_past, D) (H_kv = H without grouped-query
    attention), and the cross-attention (k, v)."""

    k: object = None
    v: object = None
    cross: tuple | None = None

    @property
    def length(self):
        """S_past: positions cached so far."""
        return 0 if self.k is None else self.k.shape[2]

    def extend(self, k_new, v_new):
        """Append (B, H, T_new, D) keys and values; returns all of them, (B, H, S_past + T_new, D) each."""
        xp = array_namespace(k_new)
        # kept in C order (B, H, S, D) whatever layout the projection gave: the attention's matrix products then
        # read one memory layout on every path (after beam search's select, in a paged cache), and round alike
        self.k = contiguous(xp.concat([k_new] if self.k is None else [self.k, k_new], axis=2))  # (B, H, S + T, D)
        self.v = contiguous(xp.concat([v_new] if self.v is None else [self.v, v_new], axis=2))
        return self.k, self.v

    def truncate(self, length):
        """Forget every position from ``length`` on (speculative decoding rolls back rejected tokens)."""
        if self.k is not None and length < self.k.shape[2]:
            self.k, self.v = self.k[:, :, :length, :], self.v[:, :, :length, :]
            if length == 0:
                self.k = self.v = None

    def select(self, rows):
        """Keep batch rows ``rows`` (an int array, repeats allowed): how beam search follows its beams."""
        xp = array_namespace(rows)

        def take(a):
            return None if a is None else xp.take(a, rows, axis=0)

        return LayerCache(take(self.k), take(self.v), None if self.cross is None else tuple(map(take, self.cross)))

    def nbytes(self):
        arrays = [a for a in (self.k, self.v, *(self.cross or ())) if a is not None]
        return sum(math.prod(a.shape) * a.dtype.itemsize if hasattr(a.dtype, "itemsize") else a.nbytes
                   for a in arrays)


def new_cache(n_layers):
    """An empty cache for a stack of n_layers layers."""
    return [LayerCache() for _ in range(n_layers)]


def cache_nbytes(cache):
    """Memory held by a whole cache, in bytes (a cache with its own accounting, like a paged one, says so)."""
    return cache.nbytes() if hasattr(cache, "nbytes") else sum(layer.nbytes() for layer in cache)


def select_rows(cache, rows):
    """The cache of the batch rows ``rows`` (an int array, repeats allowed): how beam search follows its beams."""
    return cache.select(rows) if hasattr(cache, "select") else [layer.select(rows) for layer in cache]
