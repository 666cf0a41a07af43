r"""Int8 KV caches: keys and values stored as int8 with float32 scales (:mod:`.quantize`'s symmetric formula),
read back dequantized by attention — 4 bytes per number become 1 + 4/D.  Two ways to choose the groups that share
a scale: per token (:class:`Int8LayerCache`) and, for the keys, per channel over blocks of tokens
(:class:`Int8ChannelKeysCache`, as KIVI).  Both implement :class:`~transformer_np.decoding.cache.LayerKVCache`.
"""

from __future__ import annotations

import dataclasses
import math

from ..core.backend import array_namespace
from ..core.checks import check_choice, check_positive_int
from ..decoding.cache import KVCache, LayerKVCache
from .quantize import dequantize, quantize_symmetric


class Int8LayerCache(LayerKVCache):
    r"""A layer cache holding K and V as int8 with one scale per (batch row, head, token): every appended
    k, v (B, H_kv, T, D) is quantized symmetrically over D, and attention reads the dequantized values.

    4 bytes per number become 1 + 4/D (the scale).  Quantizing each token on its own makes the result
    independent of how the tokens arrive: one prefill or one token at a time give the same cache."""

    def __init__(self):
        self.kq = self.vq = self.k = self.v = None

    @property
    def length(self):
        return 0 if self.kq is None else self.kq.q.shape[2]

    def extend(self, k_new, v_new):
        (self.kq, self.k), (self.vq, self.v) = _append_per_token(self.kq, self.k, k_new), \
            _append_per_token(self.vq, self.v, v_new)
        return self.k, self.v

    def truncate(self, length):
        if self.kq is not None and length < self.length:
            self.kq, self.vq = _first_tokens(self.kq, length), _first_tokens(self.vq, length)
            self.k, self.v = self.k[:, :, :length], self.v[:, :, :length]
            if length == 0:
                self.kq = self.vq = self.k = self.v = None

    def select(self, rows):
        raise NotImplementedError("beam search over an int8 cache")

    def nbytes(self):
        """What the cache stores: int8 values and float32 scales (the dequantized copy is a working buffer)."""
        return 0 if self.kq is None else self.kq.nbytes + self.vq.nbytes


def _append_per_token(old, old_float, new):
    """(``old`` with ``new`` (B, H, T, D) quantized per token over D appended, ``old_float`` with the new tokens'
    dequantized values appended): each token has its own scale, so the earlier ones are never dequantized again."""
    qt = quantize_symmetric(new, 8, axis=-1)  # q (B, H, T, 1, D), scale (B, H, T, 1, 1)
    deq = dequantize(qt, new.dtype)
    if old is None:
        return qt, deq
    xp = array_namespace(new)
    return (dataclasses.replace(qt, q=xp.concat([old.q, qt.q], axis=2), scale=xp.concat([old.scale, qt.scale], axis=2),
                                shape=(*new.shape[:2], old.shape[2] + new.shape[2], new.shape[3])),
            xp.concat([old_float, deq], axis=2))


def _first_tokens(qt, length):
    """A per-token Quantized (B, H, S, D) cut to its first ``length`` tokens."""
    return dataclasses.replace(qt, q=qt.q[:, :, :length], scale=qt.scale[:, :, :length],
                               shape=(*qt.shape[:2], length, qt.shape[3]))


class Int8ChannelKeysCache(Int8LayerCache):
    r"""Keys quantized per channel, values per token (as KIVI, Liu et al. 2024): a key channel's range is set by
    the channel — keys have outlier channels, so one scale per token would be set by them — so each block of
    ``group`` tokens gets one scale per (batch row, head, channel), and the block still filling stays float
    until it is full.  Blocks are cut at fixed positions (0, group, 2·group, …) however the tokens arrive; but a
    query of a prefill reads its own block already quantized where a decoding step reads it still in float, so
    the two paths differ by the quantization error (the per-token cache has no such difference)."""

    def __init__(self, group=32):
        super().__init__()
        self.group = check_positive_int("group", group)
        self.k_blocks, self.k_done, self.k_tail = [], None, None  # quantized blocks, their dequantized keys, floats

    @property
    def length(self):
        return 0 if self.vq is None else self.vq.q.shape[2]

    def extend(self, k_new, v_new):
        xp = array_namespace(k_new)
        self.vq, self.v = _append_per_token(self.vq, self.v, v_new)
        tail = k_new if self.k_tail is None else xp.concat([self.k_tail, k_new], axis=2)
        while tail.shape[2] >= self.group:
            block = quantize_symmetric(tail[:, :, :self.group], 8, axis=2)  # scale (B, H, D, 1, 1): per channel
            self.k_blocks.append(block)
            done = dequantize(block, k_new.dtype)
            self.k_done = done if self.k_done is None else xp.concat([self.k_done, done], axis=2)
            tail = tail[:, :, self.group:]
        self.k_tail = tail
        self.k = tail if self.k_done is None else xp.concat([self.k_done, tail], axis=2)
        return self.k, self.v

    def truncate(self, length):
        if self.vq is None or length >= self.length:
            return
        done = len(self.k_blocks) * self.group
        if length < done:
            raise NotImplementedError(f"per-channel keys are quantized in blocks of {self.group} tokens: cannot roll "
                                      f"back to {length} inside a finished block (blocks end at {done})")
        self.k_tail = self.k_tail[:, :, :length - done]
        self.vq = _first_tokens(self.vq, length)
        self.k, self.v = self.k[:, :, :length], self.v[:, :, :length]

    def nbytes(self):
        """int8 keys of the finished blocks and their scales, the float tail, int8 values and their scales."""
        if self.vq is None:
            return 0
        tail = math.prod(self.k_tail.shape) * self.k_tail.dtype.itemsize
        return sum(b.nbytes for b in self.k_blocks) + tail + self.vq.nbytes


def int8_cache(n_layers, keys="token", group=32):
    """An empty int8 KV cache for n_layers layers: keys quantized per token (``keys="token"``) or per channel in
    blocks of ``group`` tokens (``keys="channel"``)."""
    check_choice("keys", keys, ("token", "channel"))
    check_positive_int("group", group)
    return KVCache(Int8LayerCache() if keys == "token" else Int8ChannelKeysCache(group) for _ in range(n_layers))


def int8_cache_factory(keys="token", group=32):
    """A ``make_cache`` factory (n_layers, batch) -> :func:`int8_cache` for a decoding session."""
    int8_cache(0, keys, group)  # bad keys or group fail here, not at the first session
    return lambda n_layers, batch: int8_cache(n_layers, keys, group)
