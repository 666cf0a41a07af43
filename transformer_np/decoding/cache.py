r"""The KV cache: what a decoder keeps between generation steps so that each new token costs O(t), not O(t²).

At step t a causal self-attention layer needs K and V of every earlier position; they never change once
computed, so each layer keeps them and appends the new token's (k, v).  Cross-attention keys and values come
from the encoder memory, which is fixed: they are computed once.

The interface, declared once here (tiny-llm's ``TinyKvCache`` is the model):

* :class:`LayerKVCache` — one layer's cache, what an attention layer calls: ``length``, ``extend(k, v)``
  (append, return every position's keys and values), ``truncate(length)`` (speculative decoding's roll-back),
  ``select(rows)`` (beam search following its beams), ``nbytes()``.  A cache that cannot do one of them raises
  ``NotImplementedError`` saying why.
* :class:`KVCache` — a model's cache, one layer cache per layer (a list: ``cache[i]`` is layer i's), with the
  same operations over every layer and ``release()`` (a paged cache returns its blocks to the pool).

Implementations: :class:`LayerCache` (contiguous, preallocated: here), the int8 caches
(``efficient.kv_int8``) and the paged cache (``efficient.paged``).  A decoding session takes a ``make_cache``
factory ``(n_layers, batch) -> KVCache``; :func:`contiguous_cache` is the default one.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

from ..core.backend import array_namespace, device


class LayerKVCache(ABC):
    """One layer's keys and values, (B, H_kv, S, D) each, and the cross-attention (k, v) of an encoder-decoder
    model (``cross``, set by the layer on its first step)."""

    cross = None

    @property
    @abstractmethod
    def length(self):
        """S_past: positions cached so far."""

    @abstractmethod
    def extend(self, k_new, v_new):
        """Append (B, H_kv, T_new, D) keys and values; returns all of them, (B, H_kv, S_past + T_new, D) each."""

    @abstractmethod
    def truncate(self, length):
        """Forget every position from ``length`` on."""

    @abstractmethod
    def select(self, rows):
        """A cache of batch rows ``rows`` (an int array, repeats allowed)."""

    @abstractmethod
    def nbytes(self):
        """Bytes the cache stores."""


def kv_cache_bytes(n_layers, kv_heads, d_head, tokens, itemsize=4):
    r"""2 (K and V) · L · H_kv · D · tokens · bytes: what a KV cache holds — the one place this formula is written
    (tokens: every sequence's positions together, S · B)."""
    return 2 * n_layers * kv_heads * d_head * tokens * itemsize


def _nbytes(a):
    return 0 if a is None else math.prod(a.shape) * a.dtype.itemsize


class LayerCache(LayerKVCache):
    r"""The contiguous cache of one layer: k, v of shape (B, H_kv, S, D) in buffers of a larger capacity along S,
    grown geometrically (×2), so appending a token writes one position instead of copying the whole cache — the
    concatenating version copied 2·B·H_kv·S·D numbers at every step of every layer.  ``k``/``v`` are views of the
    buffers' first S positions (each (S, D) matrix C-ordered, as the attention's products read them); ``nbytes``
    counts what is cached, not the spare capacity (:meth:`capacity_bytes`).  k, v: initial contents (copied);
    capacity: positions to allocate for them (at least their length)."""

    def __init__(self, k=None, v=None, cross=None, capacity=None):
        self._k = self._v = None
        self._length = 0
        self.cross = cross
        if k is not None:
            self._grow(k, max(k.shape[2], capacity or 0))
            self.extend(k, v)

    @property
    def length(self):
        return self._length

    @property
    def k(self):
        return None if self._k is None else self._k[:, :, :self._length, :]

    @property
    def v(self):
        return None if self._v is None else self._v[:, :, :self._length, :]

    def _grow(self, like, needed):
        """Buffers of at least ``needed`` positions (the capacity at least doubled), holding the cached ones."""
        xp = array_namespace(like)
        capacity = max(needed, 2 * (0 if self._k is None else self._k.shape[2]))
        B, H, _, D = like.shape
        k = xp.empty((B, H, capacity, D), dtype=like.dtype, device=device(like))
        v = xp.empty((B, H, capacity, D), dtype=like.dtype, device=device(like))
        if self._length:
            k[:, :, :self._length, :], v[:, :, :self._length, :] = self.k, self.v
        self._k, self._v = k, v

    def extend(self, k_new, v_new):
        start, end = self._length, self._length + k_new.shape[2]
        if self._k is None or end > self._k.shape[2]:
            self._grow(k_new, end)
        self._k[:, :, start:end, :], self._v[:, :, start:end, :] = k_new, v_new
        self._length = end
        return self.k, self.v

    def truncate(self, length):
        self._length = min(self._length, length)

    def select(self, rows):
        xp = array_namespace(rows)

        def take(a):
            return None if a is None else xp.take(a, rows, axis=0)

        return LayerCache(take(self.k), take(self.v), None if self.cross is None else tuple(map(take, self.cross)))

    def nbytes(self):
        return sum(_nbytes(a) for a in (self.k, self.v, *(self.cross or ())))

    def capacity_bytes(self):
        """Bytes of the buffers, spare capacity included."""
        return _nbytes(self._k) + _nbytes(self._v) + sum(_nbytes(a) for a in self.cross or ())


class KVCache(list):
    """A model's cache: one :class:`LayerKVCache` per layer (``cache[i]``), and the operations over all of them."""

    @property
    def length(self):
        """Positions cached (every layer holds the same)."""
        return self[0].length

    def truncate(self, length):
        for layer in self:
            layer.truncate(length)

    def select(self, rows):
        """The cache of batch rows ``rows``: how beam search follows its beams."""
        return type(self)(layer.select(rows) for layer in self)

    def nbytes(self):
        return sum(layer.nbytes() for layer in self)

    def release(self):
        """Return whatever the cache holds to its owner (nothing to do for a cache of its own arrays)."""


def new_cache(n_layers):
    """An empty contiguous cache for a stack of n_layers layers."""
    return KVCache(LayerCache() for _ in range(n_layers))


def contiguous_cache(n_layers, batch):
    """The default ``make_cache`` factory of the decoding sessions: :func:`new_cache`."""
    return new_cache(n_layers)
