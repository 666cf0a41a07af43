r"""A paged KV cache (vLLM's PagedAttention, Kwon et al. 2023) in NumPy: keys and values live in fixed blocks of
16 tokens drawn from one preallocated pool; each sequence owns a **block table**, the list of its blocks in
order, so its cache grows a block at a time and never needs a contiguous region sized for the longest request.

* **Free list**: finished sequences return their blocks; memory wasted per sequence is under one block.
* **Sharing**: a sequence may start from another's blocks (a common prompt prefix, or the beams of a beam search);
  each block counts its owners, and a shared block is **copied on write** — before a sequence appends into it —
  so no owner ever sees another's tokens.
* **Attention** gathers a sequence's keys and values through its table (here by NumPy fancy indexing; on a GPU a
  kernel reads the blocks in place), so a step's result is bit for bit the contiguous cache's.

:class:`PagedKVCache` is a drop-in for the contiguous cache of :mod:`transformer_np.decoding`: pass
``make_cache=paged_cache(pool)`` to :class:`~transformer_np.decoding.LMSession`.
"""

from __future__ import annotations

import math

import numpy as np

from ..core.checks import check_positive_int
from ..decoding.cache import KVCache, LayerKVCache

BLOCK_SIZE = 16


class BlockPool:
    """Blocks of ``block_size`` positions for every layer's K and V: arrays (L, n_blocks, H_kv, block, D), a free
    list, owner counts, and the sequences' block tables and lengths."""

    def __init__(self, n_layers, n_blocks, n_kv_heads, d_head, block_size=BLOCK_SIZE, dtype=np.float32):
        for name, value in (("n_layers", n_layers), ("n_blocks", n_blocks), ("n_kv_heads", n_kv_heads),
                            ("d_head", d_head), ("block_size", block_size)):
            check_positive_int(name, value)
        self.block_size, self.n_blocks = block_size, n_blocks
        self.k = np.zeros((n_layers, n_blocks, n_kv_heads, block_size, d_head), dtype=dtype)
        self.v = np.zeros_like(self.k)
        self.refs = np.zeros(n_blocks, np.int64)
        self.free = list(range(n_blocks - 1, -1, -1))  # pop() gives block 0 first
        self.tables, self.lengths = {}, {}
        self._next_id = 0
        self.peak_blocks = 0

    @classmethod
    def for_model(cls, model, n_blocks, block_size=BLOCK_SIZE):
        """A pool shaped for a model's layers and K/V heads (a DecoderLM or a Llama model)."""
        cfg = model.config
        return cls(cfg.n_layers, n_blocks, cfg.kv_heads, cfg.d_head, block_size, model.params["embed"]["table"].dtype)

    # --- blocks ---
    @property
    def used_blocks(self):
        return len(self.refs) - len(self.free)

    def block_bytes(self):
        """Bytes of one block across every layer's K and V."""
        return 2 * self.k[:, 0].nbytes

    def _allocate(self):
        if not self.free:
            raise MemoryError(f"the KV block pool is full ({len(self.refs)} blocks of {self.block_size} tokens)")
        block = self.free.pop()
        self.refs[block] = 1
        self.peak_blocks = max(self.peak_blocks, self.used_blocks)
        return block

    def _release_block(self, block):
        self.refs[block] -= 1
        if self.refs[block] == 0:
            self.free.append(block)

    # --- sequences ---
    def new_sequence(self, share_from=None, n_tokens=0):
        """A new sequence id; with share_from, it starts as that sequence's first n_tokens (whole blocks shared,
        the partial last block shared too and copied on the first write)."""
        seq = self._next_id
        self._next_id += 1
        table = []
        if share_from is not None:
            if not 0 <= n_tokens <= self.lengths[share_from]:
                raise ValueError(f"n_tokens must lie in [0, {self.lengths[share_from]}], got {n_tokens}")
            table = self.tables[share_from][: math.ceil(n_tokens / self.block_size)]
            for block in table:
                self.refs[block] += 1
        self.tables[seq], self.lengths[seq] = list(table), n_tokens
        return seq

    def fork(self, seq):
        """A new sequence that shares all of seq's blocks (a beam that continues seq)."""
        return self.new_sequence(seq, self.lengths[seq])

    def release(self, seq):
        """The sequence is finished: its blocks go back to the free list once no other sequence owns them."""
        for block in self.tables.pop(seq):
            self._release_block(block)
        del self.lengths[seq]

    def reserve(self, seq, n_new):
        """Make room for n_new positions after seq's length: allocate blocks, copy the shared last block on
        write.  Returns (block ids (n_new,), offsets (n_new,)) of the new positions."""
        table, start, bs = self.tables[seq], self.lengths[seq], self.block_size
        first = start // bs
        if start % bs and first < len(table) and self.refs[table[first]] > 1:  # copy on write
            private = self._allocate()
            self.k[:, private], self.v[:, private] = self.k[:, table[first]], self.v[:, table[first]]
            self._release_block(table[first])
            table[first] = private
        while len(table) * bs < start + n_new:
            table.append(self._allocate())
        pos = np.arange(start, start + n_new)
        return np.asarray(table, np.int64)[pos // bs], pos % bs

    def gather(self, layer, seqs, lengths):
        """Keys and values of sequences seqs (holding lengths[b] positions each) for layer, (B, H_kv, S, D) each
        with S = max(lengths); positions past a sequence's own length are zeros (the key mask hides them)."""
        bs, length = self.block_size, max(lengths)
        pos = np.arange(length)
        blocks = np.zeros((len(seqs), length), np.int64)
        valid = np.zeros((len(seqs), length), bool)
        for b, (seq, n) in enumerate(zip(seqs, lengths)):
            table = np.asarray(self.tables[seq], np.int64)
            blocks[b, :n] = table[pos[:n] // bs]
            valid[b, :n] = True
        k = self.k[layer][blocks, :, pos % bs]  # (B, length, H_kv, D)
        v = self.v[layer][blocks, :, pos % bs]
        if not valid.all():
            k, v = np.where(valid[..., None, None], k, 0), np.where(valid[..., None, None], v, 0)
        return np.ascontiguousarray(k.transpose(0, 2, 1, 3)), np.ascontiguousarray(v.transpose(0, 2, 1, 3))


class _PagedLayer(LayerKVCache):
    """One layer's view of a :class:`PagedKVCache`: it writes and reads the layer's blocks; the operations on
    sequences (truncate, select, nbytes) belong to the whole cache, which owns the block tables."""

    def __init__(self, owner, index):
        self.owner, self.index = owner, index

    @property
    def length(self):
        return self.owner.length

    def extend(self, k_new, v_new):
        """Write the new positions' (B, H_kv, T_new, D) keys and values into the blocks; return every position's."""
        return self.owner.write(self.index, k_new, v_new)

    def truncate(self, length):
        raise NotImplementedError("a paged cache is rolled back as a whole (PagedKVCache.truncate), not by layer")

    def select(self, rows):
        raise NotImplementedError("a paged cache selects rows as a whole (PagedKVCache.select): blocks are shared")

    def nbytes(self):
        raise NotImplementedError("a paged cache counts its blocks as a whole (PagedKVCache.nbytes)")


class PagedKVCache(KVCache):
    """The paged cache of a batch of sequences (one per row): a list of per-layer views over a shared
    :class:`BlockPool`, usable wherever the contiguous cache (a list of LayerCache) is."""

    def __init__(self, pool, seqs):
        super().__init__(_PagedLayer(self, i) for i in range(pool.k.shape[0]))
        self.pool, self.seqs = pool, list(seqs)
        self._slots = None

    @property
    def length(self):
        """Positions cached: the longest row's (rows of a decoding session all have the same)."""
        return max(self.pool.lengths[s] for s in self.seqs)

    def write(self, layer, k_new, v_new):
        pool = self.pool
        T_new = k_new.shape[2]
        if layer == 0:  # the first layer of a step allocates (and copies on write) for every layer
            self._slots = [pool.reserve(s, T_new) for s in self.seqs]
        blocks = np.concatenate([b for b, _ in self._slots])
        offsets = np.concatenate([o for _, o in self._slots])
        H, D = k_new.shape[1], k_new.shape[3]
        pool.k[layer][blocks, :, offsets] = np.asarray(k_new).transpose(0, 2, 1, 3).reshape(-1, H, D)
        pool.v[layer][blocks, :, offsets] = np.asarray(v_new).transpose(0, 2, 1, 3).reshape(-1, H, D)
        lengths = [pool.lengths[s] + T_new for s in self.seqs]
        if layer == len(self) - 1:  # the last layer commits the new lengths
            for s in self.seqs:
                pool.lengths[s] += T_new
        return pool.gather(layer, self.seqs, lengths)

    def select(self, rows):
        """Keep (and repeat) rows, as beam search does: each new row shares its parent's blocks."""
        new = [self.pool.fork(self.seqs[int(r)]) for r in np.asarray(rows).reshape(-1)]
        for s in self.seqs:
            self.pool.release(s)
        return PagedKVCache(self.pool, new)

    def truncate(self, length):
        raise NotImplementedError("rolling back a paged cache is not supported")

    def nbytes(self):
        """Bytes of the distinct blocks these sequences hold (a shared block counts once)."""
        blocks = {b for s in self.seqs for b in self.pool.tables[s]}
        return len(blocks) * self.pool.block_bytes()

    def release(self):
        for s in self.seqs:
            self.pool.release(s)
        self.seqs = []


def paged_cache(pool):
    """A cache factory for :class:`~transformer_np.decoding.LMSession`: each row of the batch a new sequence."""
    return lambda n_layers, batch: PagedKVCache(pool, [pool.new_sequence() for _ in range(batch)])
