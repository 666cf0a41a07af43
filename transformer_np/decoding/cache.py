r"""The KV cache: what a decoder keeps between generation steps so that each new token costs O(t), not O(t²).

At step t a causal self-attention layer needs K and V of every earlier position; they never change once
computed, so each layer keeps them and appends the new token's (k, v).  Cross-attention keys and values come
from the encoder memory, which is fixed: they are computed once.

The interface, declared once here (tiny-llm's ``TinyKvCache`` is the model):

* :class:`LayerKVCache` — one layer's cache, what an attention layer calls: ``length``, ``extend(k, v)``
  (append, return every position's keys and values), ``attend(q, k, v, mask, path)`` (append, then attention
  over every position: by default ``extend`` and the core attention; a paged cache reads its blocks in place),
  ``truncate(length)`` (speculative decoding's roll-back), ``select(rows)`` (beam search following its beams),
  ``nbytes()``.  A cache that cannot do one of them raises ``NotImplementedError`` saying why.
* :class:`KVCache` — a model's cache, one layer cache per layer (a list: ``cache[i]`` is layer i's), with the
  same operations over every layer and ``release()`` (a paged cache returns its blocks to the pool).

Implementations: :class:`LayerCache` (contiguous, preallocated: here), :class:`WindowCache` (a sliding-window
layer's: only the last W − 1 positions, here), the int8 caches (``efficient.kv_int8``) and the paged cache
(``efficient.paged``).  A decoding session takes a ``make_cache`` factory ``(n_layers, batch) -> KVCache``;
by default :func:`model_cache` — each layer's cache as its window says (``config.windows``, the model protocol).

A layer whose queries see only the last W keys (Mistral's, Gemma 3's local layers) needs only the last W − 1
positions before a new token: its cache stops growing at W positions, whatever the context.  ``extend`` then
returns the *last* positions, not all of them; the layer keeps the last columns of its mask to match
(:func:`~transformer_np.core.masks.last_keys`).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import numpy as np

from ..core.backend import array_namespace, device
from ..core.blockwise import attention
from ..core.checks import check_positive_int
from ..core.masks import last_keys


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

    def attend(self, q, k_new, v_new, mask=None, path="auto"):
        """Append (k_new, v_new), then softmax(Q Kᵀ/√D, mask) V over the positions returned: (out (B, H, T, D),
        weights or None) as :func:`~transformer_np.core.blockwise.attention` (path "auto", "plain", "blockwise")."""
        k, v = self.extend(k_new, v_new)
        return attention(q, k, v, last_keys(mask, k.shape[-2]), path)

    @abstractmethod
    def truncate(self, length):
        """Forget every position from ``length`` on."""

    @abstractmethod
    def select(self, rows):
        """A cache of batch rows ``rows`` (an int array, repeats allowed)."""

    def keep(self, positions):
        """Keep only the cached positions listed (ascending), in that order, and forget the rest: the branch of a
        token tree the target accepted (speculative decoding's tree verification)."""
        raise NotImplementedError(f"{type(self).__name__} cannot keep a subset of its positions")

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

    def keep(self, positions):
        idx = np.asarray(positions, dtype=np.int64)
        if idx.ndim != 1 or (idx.size and (idx.min() < 0 or idx.max() >= self._length or np.any(np.diff(idx) <= 0))):
            raise ValueError(f"positions must be ascending ints in [0, {self._length}), got {idx.tolist()[:8]}")
        xp = array_namespace(self._k)
        sel = xp.asarray(idx, device=device(self._k))
        k, v = xp.take(self._k, sel, axis=2), xp.take(self._v, sel, axis=2)  # copies: safe to write back
        self._k[:, :, :idx.size], self._v[:, :, :idx.size] = k, v
        self._length = int(idx.size)

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


class WindowCache(LayerKVCache):
    r"""The cache of a sliding-window layer (window W: a query at position p sees keys p − W + 1 … p): it holds
    only positions a later query can see.  ``extend`` first forgets every position before the last W − 1, then
    appends the new ones and returns what it holds — keys and values of positions S − n … S − 1 (n ≤ W − 1 + T_new),
    so attention takes the last n columns of its mask.  Forgetting is lazy (at the next extend), so the positions of
    the last extend can be rolled back (``truncate``, speculative decoding's verify pass); before that, the cache
    holds what the next query needs and no more.  A chunk of more than W new positions (a long prompt's prefill)
    is returned with the kept ones as one new array, and only its last W − 1 positions are stored.  Memory: at most
    W − 1 + T_new positions (T_new ≤ W), buffers of 2(W + T_new), whatever the context (a full cache of a
    4,096-token context holds 4,096).  ``length`` counts every position seen, as
    :class:`LayerCache`'s does (the model's positions and masks are counted from it)."""

    def __init__(self, window, k=None, v=None, cross=None):
        self.window = check_positive_int("window", window)
        self.cross = cross
        self._k = self._v = None
        self._first = self._held = self._length = 0  # buffer slot of the oldest position held; held; seen
        if k is not None:
            self.extend(k, v)

    @property
    def length(self):
        return self._length

    @property
    def held(self):
        """Positions held: the last ``held`` of the ``length`` seen."""
        return self._held

    @property
    def k(self):
        return None if self._k is None else self._k[:, :, self._first:self._first + self._held, :]

    @property
    def v(self):
        return None if self._v is None else self._v[:, :, self._first:self._first + self._held, :]

    def extend(self, k_new, v_new):
        keep = min(self._held, self.window - 1)  # what a query after them can still see
        self._first, self._held = self._first + self._held - keep, keep
        T = k_new.shape[2]
        if T > self.window:  # a long chunk: returned whole, stored as its last W − 1 positions only
            xp = array_namespace(k_new)
            k_all = xp.concat([self.k, k_new], axis=2) if keep else k_new
            v_all = xp.concat([self.v, v_new], axis=2) if keep else v_new
            self._k = self._v = None
            self._held = 0
            tail = k_all.shape[2] - (self.window - 1)  # (a slice from -0 would keep everything when W = 1)
            self.extend(k_all[:, :, tail:, :], v_all[:, :, tail:, :])
            self._length += T - (self.window - 1)
            return k_all, v_all
        if self._k is None or self._first + keep + T > self._k.shape[2]:  # out of room: copy the kept to a new start
            xp = array_namespace(k_new)
            B, H, _, D = k_new.shape
            capacity = 2 * (self.window + T)  # a copy of W − 1 positions every ~W + T steps
            k = xp.empty((B, H, capacity, D), dtype=k_new.dtype, device=device(k_new))
            v = xp.empty((B, H, capacity, D), dtype=k_new.dtype, device=device(k_new))
            if keep:
                k[:, :, :keep, :], v[:, :, :keep, :] = self.k, self.v
            self._k, self._v, self._first = k, v, 0
        end = self._first + keep + T
        self._k[:, :, end - T:end, :], self._v[:, :, end - T:end, :] = k_new, v_new
        self._held, self._length = keep + T, self._length + T
        return self.k, self.v

    def truncate(self, length):
        drop = self._length - min(self._length, length)
        if drop == 0:
            return
        # positions the next query (at ``length``) sees: from length − W + 1 on; they must all still be held
        first_held = self._length - self._held
        if drop > self._held or first_held > max(0, length - self.window + 1):
            raise ValueError(f"a window cache (W={self.window}) holding positions {first_held}…{self._length - 1} "
                             f"cannot roll back to length={length}: it no longer holds the positions that query needs "
                             f"(it keeps W − 1 plus the last extend's)")
        self._held -= drop
        self._length -= drop

    def select(self, rows):
        xp = array_namespace(rows)

        def take(a):
            return None if a is None else xp.take(a, rows, axis=0)

        out = WindowCache(self.window, cross=None if self.cross is None else tuple(map(take, self.cross)))
        if self._k is not None:
            out.extend(take(self.k), take(self.v))
            out._length = self._length
        return out

    def nbytes(self):
        return sum(_nbytes(a) for a in (self.k, self.v, *(self.cross or ())))

    def capacity_bytes(self):
        """Bytes of the buffers, spare room included."""
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

    def keep(self, positions):
        """Every layer keeps only ``positions`` (ascending): see :meth:`LayerKVCache.keep`."""
        for layer in self:
            layer.keep(positions)

    def select(self, rows):
        """The cache of batch rows ``rows``: how beam search follows its beams."""
        return type(self)(layer.select(rows) for layer in self)

    def nbytes(self):
        return sum(layer.nbytes() for layer in self)

    def release(self):
        """Return whatever the cache holds to its owner (nothing to do for a cache of its own arrays)."""


def new_cache(n_layers, windows=None):
    """An empty contiguous cache for a stack of n_layers layers; windows: each layer's window W (a
    :class:`WindowCache`) or None (a :class:`LayerCache`, every position kept) — by default every layer keeps all."""
    windows = (None,) * n_layers if windows is None else tuple(windows)
    if len(windows) != n_layers:
        raise ValueError(f"windows must give one window (or None) per layer: {n_layers}, got {len(windows)}")
    return KVCache(LayerCache() if w is None else WindowCache(w) for w in windows)


def contiguous_cache(n_layers, batch):
    """A ``make_cache`` factory: every layer keeps every position (:func:`new_cache`), whatever its window."""
    return new_cache(n_layers)


def model_cache(config):
    """The ``make_cache`` factory a model's config asks for: a :class:`WindowCache` for each layer with a window
    (``config.windows``, the model protocol), a contiguous one for the others — the decoding sessions' default."""
    windows = tuple(config.windows)
    return lambda n_layers, batch: new_cache(n_layers, windows)
