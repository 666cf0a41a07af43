r"""A paged KV cache (vLLM's PagedAttention, Kwon et al. 2023) in NumPy: keys and values live in fixed blocks of
16 tokens drawn from one preallocated pool; each sequence owns a **block table**, the list of its blocks in
order, so its cache grows a block at a time and never needs a contiguous region sized for the longest request.

* **Free list**: finished sequences return their blocks; memory wasted per sequence is under one block.
* **Sharing**: a sequence may start from another's blocks (a common prompt prefix, or the beams of a beam search);
  each block counts its owners, and a shared block is **copied on write** — before a sequence appends into it —
  so no owner ever sees another's tokens.
* **Attention** either gathers a sequence's keys and values through its table into one contiguous copy (NumPy
  fancy indexing), so a step's result is bit for bit the contiguous cache's; or, with ``in_place=True``, walks
  the block table a tile of blocks at a time with the online softmax (:func:`paged_attention`: PagedAttention's
  kernel, in NumPy), so attention's working set is one tile, not the whole sequence — equal to the gather path
  to rounding.
* **Prefix caching** (vLLM's automatic prefix caching): a full block is registered under a key — its tokens and
  the key of the block before it — so a later sequence whose prompt starts with the same tokens takes those
  blocks instead of recomputing them (:meth:`BlockPool.match`, :meth:`BlockPool.register`).  A registered block
  whose last owner finishes is not freed but kept, least recently used first in line for eviction when the free
  list runs out; a block in use is never evicted, and a registered block is never written (sequences only
  append after it).
* **Sliding windows** (Gemma 3's local layers): a pool made for layers of window W (``window=W``) keeps only the
  blocks holding a sequence's last W − 1 positions — as a sequence grows, the block that slides out of reach goes
  back to the free list and the next one is drawn from it, so each sequence cycles through a ring of about
  ⌈(W − 1)/16⌉ + 1 blocks, whatever its length.  :class:`LayerPools` keeps one pool per window among a model's
  layers (vLLM's KV-cache groups): Gemma 3's 15 sliding layers in a window pool, its 3 global ones in a plain one.

:class:`PagedKVCache` is a drop-in for the contiguous cache of :mod:`transformer_np.decoding`: pass
``make_cache=paged_cache(pool)`` to :class:`~transformer_np.decoding.LMSession`.
"""

from __future__ import annotations

import collections
import math

import numpy as np

from ..core.blockwise import attention_over_tiles
from ..core.checks import check_positive_int
from ..decoding.cache import KVCache, LayerKVCache

BLOCK_SIZE = 16
FORGOTTEN = -1  # a window pool's table entry for a block given back: its positions are out of every query's reach


class BlockPool:
    """Blocks of ``block_size`` positions for every layer's K and V: arrays (L, n_blocks, H_kv, block, D), a free
    list, owner counts, and the sequences' block tables and lengths.  window: the layers' attention window W — the
    pool then keeps only the blocks of each sequence's last W − 1 positions (:meth:`forget`)."""

    def __init__(self, n_layers, n_blocks, n_kv_heads, d_head, block_size=BLOCK_SIZE, dtype=np.float32,
                 window=None):
        for name, value in (("n_layers", n_layers), ("n_blocks", n_blocks), ("n_kv_heads", n_kv_heads),
                            ("d_head", d_head), ("block_size", block_size)):
            check_positive_int(name, value)
        self.window = None if window is None else check_positive_int("window", window)
        self.block_size, self.n_blocks = block_size, n_blocks
        self.k = np.zeros((n_layers, n_blocks, n_kv_heads, block_size, d_head), dtype=dtype)
        self.v = np.zeros_like(self.k)
        self.refs = np.zeros(n_blocks, np.int64)
        self.free = list(range(n_blocks - 1, -1, -1))  # pop() gives block 0 first
        self.tables, self.lengths = {}, {}
        self._next_id = 0
        self.peak_blocks = 0
        # prefix caching: key (parent's uid, the block's tokens) -> block, and back; each key's uid (never reused,
        # so a key made under an evicted parent can never match again); registered blocks no sequence owns, least
        # recently used first; each sequence's registered blocks so far and the uid of the last
        self.cached, self.key_of, self.uid, self.evictable = {}, {}, {}, collections.OrderedDict()
        self._registered, self._next_uid = {}, 0
        self.evictions = 0

    @classmethod
    def for_model(cls, model, n_blocks, block_size=BLOCK_SIZE):
        """A pool shaped for all of a model's layers and K/V heads, every position kept (windows or not)."""
        cfg = model.config
        return cls(cfg.n_layers, n_blocks, cfg.kv_heads, cfg.d_head, block_size, model.params["embed"]["table"].dtype)

    @property
    def n_layers(self):
        return self.k.shape[0]

    # --- blocks ---
    @property
    def used_blocks(self):
        """Blocks some sequence owns (a registered block kept for later is not counted)."""
        return len(self.refs) - len(self.free) - len(self.evictable)

    @property
    def available_blocks(self):
        """Blocks an allocation can take: the free ones, then the kept registered ones (evicted, oldest first)."""
        return len(self.free) + len(self.evictable)

    def block_bytes(self):
        """Bytes of one block across every layer's K and V."""
        return 2 * self.k[:, 0].nbytes

    def _allocate(self):
        if self.free:
            block = self.free.pop()
        elif self.evictable:  # the least recently used kept block: its key is forgotten
            block, _ = self.evictable.popitem(last=False)
            key = self.key_of.pop(block)
            del self.cached[key], self.uid[key]
            self.evictions += 1
        else:
            raise MemoryError(f"the KV block pool is full ({len(self.refs)} blocks of {self.block_size} tokens)")
        self.refs[block] = 1
        self.peak_blocks = max(self.peak_blocks, self.used_blocks)
        return block

    def _release_block(self, block):
        if block == FORGOTTEN:
            return
        self.refs[block] -= 1
        if self.refs[block] == 0:
            if block in self.key_of:  # registered: kept for a later prompt with the same prefix
                self.evictable[block] = None
            else:
                self.free.append(block)

    def _take(self, block):
        """One more owner for ``block`` (a kept registered block leaves the eviction line)."""
        self.refs[block] += 1
        self.evictable.pop(block, None)
        self.peak_blocks = max(self.peak_blocks, self.used_blocks)

    # --- prefix caching ---
    def match(self, tokens):
        """The registered blocks that hold ``tokens``'s first whole blocks, in order (the longest cached prefix)."""
        bs, parent, blocks = self.block_size, -1, []
        for j in range(len(tokens) // bs):
            key = (parent, tuple(tokens[j * bs:(j + 1) * bs]))
            if key not in self.cached:
                break
            blocks.append(self.cached[key])
            parent = self.uid[key]
        return blocks

    def cache_tree(self):
        """{key (parent's uid, tokens): (its uid, its block)} of every cached block: the prefix cache's tree."""
        return {key: (self.uid[key], block) for key, block in self.cached.items()}

    def sequence_from_cache(self, blocks):
        """A new sequence that starts as the registered ``blocks`` (each taken: one more owner)."""
        seq = self.new_sequence()
        for block in blocks:
            self._take(block)
        self.tables[seq], self.lengths[seq] = list(blocks), len(blocks) * self.block_size
        self._registered[seq] = (len(blocks), self.uid[self.key_of[blocks[-1]]] if blocks else -1)
        return seq

    def register(self, seq, tokens):
        """Register seq's whole blocks not registered yet, ``tokens`` being (at least) the tokens of its cached
        positions.  A block whose key another block already has stays unregistered (its twin is the cached one)."""
        bs, table = self.block_size, self.tables[seq]
        done, parent = self._registered.get(seq, (0, -1))
        for j in range(done, self.lengths[seq] // bs):
            key = (parent, tuple(tokens[j * bs:(j + 1) * bs]))
            if key not in self.cached:
                self.cached[key], self.key_of[table[j]], self.uid[key] = table[j], key, self._next_uid
                self._next_uid += 1
            parent = self.uid[key]
            done = j + 1
        self._registered[seq] = (done, parent)

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
                if block != FORGOTTEN:
                    self.refs[block] += 1
        self.tables[seq], self.lengths[seq] = list(table), n_tokens
        return seq

    def fork(self, seq):
        """A new sequence that shares all of seq's blocks (a beam that continues seq)."""
        return self.new_sequence(seq, self.lengths[seq])

    def release(self, seq):
        """The sequence is finished: its blocks go back to the free list once no other sequence owns them (a
        registered one is kept for later prompts, evicted only when the free list runs out)."""
        for block in self.tables.pop(seq):
            self._release_block(block)
        del self.lengths[seq]
        self._registered.pop(seq, None)

    def reserve(self, seq, n_new, skip=0):
        """Make room for n_new positions after seq's length: allocate blocks, copy the shared last block on
        write.  skip: the first ``skip`` new positions are not stored (a window pool's, out of reach already): their
        whole blocks stay FORGOTTEN.  Returns (block ids, offsets) of the stored new positions (n_new − skip,)."""
        table, start, bs = self.tables[seq], self.lengths[seq], self.block_size
        first, stored = start // bs, start + skip
        if start % bs and first < len(table) and table[first] != FORGOTTEN and self.refs[table[first]] > 1:
            private = self._allocate()  # copy on write
            self.k[:, private], self.v[:, private] = self.k[:, table[first]], self.v[:, table[first]]
            self._release_block(table[first])
            table[first] = private
        while len(table) * bs < start + n_new:
            table.append(FORGOTTEN if (len(table) + 1) * bs <= stored else self._allocate())
        pos = np.arange(stored, start + n_new)
        blocks = np.asarray(table, np.int64)[pos // bs]
        if (blocks == FORGOTTEN).any():
            raise AssertionError("a stored position fell in a forgotten block")
        return blocks, pos % bs

    def forget(self, seq):
        """A window pool: give back seq's blocks whose positions all lie before its last W − 1 (no later query
        sees them); a plain pool keeps everything."""
        if self.window is None:
            return
        table = self.tables[seq]
        for i in range(max(0, self.lengths[seq] - (self.window - 1)) // self.block_size):
            self._release_block(table[i])
            table[i] = FORGOTTEN

    def gather(self, layer, seqs, lengths, start=0):
        """Keys and values of sequences seqs (holding lengths[b] positions each) for layer, (B, H_kv, S, D) each:
        positions start … max(lengths) − 1; positions past a sequence's own length are zeros (the key mask hides
        them)."""
        bs, length = self.block_size, max(lengths)
        pos = np.arange(start, length)
        blocks = np.zeros((len(seqs), len(pos)), np.int64)
        valid = np.zeros((len(seqs), len(pos)), bool)
        for b, (seq, n) in enumerate(zip(seqs, lengths)):
            table = np.asarray(self.tables[seq], np.int64)
            blocks[b, :n - start] = table[pos[:n - start] // bs]
            valid[b, :n - start] = True
        if (blocks[valid] == FORGOTTEN).any():
            raise AssertionError("gathering a position from a forgotten block")
        k = self.k[layer][blocks, :, pos % bs]  # (B, length, H_kv, D)
        v = self.v[layer][blocks, :, pos % bs]
        if not valid.all():
            k, v = np.where(valid[..., None, None], k, 0), np.where(valid[..., None, None], v, 0)
        return np.ascontiguousarray(k.transpose(0, 2, 1, 3)), np.ascontiguousarray(v.transpose(0, 2, 1, 3))


class LayerPools:
    """One :class:`BlockPool` per attention window among a model's layers (vLLM's KV-cache groups): ``groups``, a
    list of (pool, the model's layer indices it holds).  A sequence is one id per pool (a tuple)."""

    def __init__(self, groups):
        self.groups = [(pool, list(layers)) for pool, layers in groups]
        held = sorted(i for _, layers in self.groups for i in layers)
        if held != list(range(len(held))) or any(p.n_layers != len(ls) for p, ls in self.groups):
            raise ValueError(f"the pools must hold layers 0 … L − 1 once each, one pool layer per model layer, got "
                             f"{[(p.n_layers, ls) for p, ls in self.groups]}")

    @classmethod
    def for_model(cls, model, n_blocks, window_blocks=None, block_size=BLOCK_SIZE):
        """Pools for a model's layers grouped by ``config.windows``: n_blocks for the layers that keep every
        position, window_blocks (default n_blocks) for each window's."""
        cfg = model.config
        by_window = {}
        for i, w in enumerate(cfg.windows):
            by_window.setdefault(w, []).append(i)
        dtype = model.params["embed"]["table"].dtype
        order = sorted(by_window, key=lambda w: -1 if w is None else w)  # the plain pool first, then by window
        return cls((BlockPool(len(by_window[w]), n_blocks if w is None else window_blocks or n_blocks, cfg.kv_heads,
                              cfg.d_head, block_size, dtype, window=w), by_window[w]) for w in order)

    @property
    def block_size(self):
        return self.groups[0][0].block_size

    def new_sequence(self):
        return tuple(pool.new_sequence() for pool, _ in self.groups)

    def report(self):
        """(window or None, layers, peak blocks, bytes of one block) per pool."""
        return [(pool.window, len(layers), pool.peak_blocks, pool.block_bytes()) for pool, layers in self.groups]


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

    def attend(self, q, k_new, v_new, mask=None, path="auto"):
        """Write the new positions, then attend: over the blocks in place when the cache says so (and no weights
        are asked for: path "plain"), else over the gathered copy."""
        if self.owner.in_place and path != "plain":
            return self.owner.attend_in_place(self.index, q, k_new, v_new, mask), None
        return super().attend(q, k_new, v_new, mask, path)

    def truncate(self, length):
        raise NotImplementedError("a paged cache is rolled back as a whole (PagedKVCache.truncate), not by layer")

    def select(self, rows):
        raise NotImplementedError("a paged cache selects rows as a whole (PagedKVCache.select): blocks are shared")

    def nbytes(self):
        raise NotImplementedError("a paged cache counts its blocks as a whole (PagedKVCache.nbytes)")


class PagedKVCache(KVCache):
    """The paged cache of a batch of sequences (one per row): a list of per-layer views over a shared
    :class:`BlockPool` (seqs: one id per row), or over a model's :class:`LayerPools` (seqs: one tuple of ids per
    row), usable wherever the contiguous cache (a list of LayerCache) is.  A window pool's layers return the last
    W − 1 + T positions, as :class:`~transformer_np.decoding.cache.WindowCache` does; their rows must then all hold
    the same number of positions (a decoding session's left-padded batch)."""

    def __init__(self, pool, seqs, in_place=False):
        pools = pool if isinstance(pool, LayerPools) else LayerPools([(pool, range(pool.n_layers))])
        if in_place and any(p.window is not None for p, _ in pools.groups):
            raise NotImplementedError("in-place attention reads whole sequences' blocks; a window pool forgets them")
        self.in_place = in_place
        seqs = list(seqs)
        self.pools = pools
        self.parts = [(p, layers, [s[g] if isinstance(pool, LayerPools) else s for s in seqs])
                      for g, (p, layers) in enumerate(pools.groups)]
        self._where = {i: (part, j) for part in self.parts for j, i in enumerate(part[1])}  # layer -> its pool's
        super().__init__(_PagedLayer(self, i) for i in range(len(self._where)))
        self.pool, self.seqs = pool, seqs
        self._slots = {}

    @property
    def length(self):
        """Positions cached: the longest row's (rows of a decoding session all have the same)."""
        pool, _, seqs = self.parts[0]
        return max(pool.lengths[s] for s in seqs)

    def _store(self, layer, k_new, v_new):
        """Write the new positions' (B, H_kv, T_new, D) keys and values into ``layer``'s blocks (the pool's first
        layer of a step reserves, and copies on write, for all its layers; a window pool stores only the positions
        still in reach).  Returns (pool, seqs, its layer index, each row's past length)."""
        (pool, layers, seqs), j = self._where[layer]
        T_new = k_new.shape[2]
        past = [pool.lengths[s] for s in seqs]
        skip = 0
        if pool.window is not None:
            if len(set(past)) > 1:
                raise NotImplementedError(f"a window pool's rows must hold equal numbers of positions, got {past}")
            skip = max(0, T_new - (pool.window - 1))  # new positions out of every later query's reach already
        if j == 0:
            self._slots[id(pool)] = [pool.reserve(s, T_new, skip) for s in seqs]
        slots = self._slots[id(pool)]
        blocks = np.concatenate([b for b, _ in slots])
        offsets = np.concatenate([o for _, o in slots])
        H, D = k_new.shape[1], k_new.shape[3]
        pool.k[j][blocks, :, offsets] = np.asarray(k_new[:, :, skip:]).transpose(0, 2, 1, 3).reshape(-1, H, D)
        pool.v[j][blocks, :, offsets] = np.asarray(v_new[:, :, skip:]).transpose(0, 2, 1, 3).reshape(-1, H, D)
        return pool, seqs, j, past

    def _commit(self, layer, T_new):
        """After the pool's last layer has read its keys: the new lengths, and a window pool's out-of-reach blocks
        given back."""
        (pool, layers, seqs), j = self._where[layer]
        if j == len(layers) - 1:
            for s in seqs:
                pool.lengths[s] += T_new
                pool.forget(s)

    def attend_in_place(self, layer, q, k_new, v_new, mask):
        """Write the new positions into the blocks, then :func:`paged_attention` over them."""
        pool, seqs, j, past = self._store(layer, k_new, v_new)
        out = paged_attention(q, pool, j, seqs, [n + k_new.shape[2] for n in past], mask)
        self._commit(layer, k_new.shape[2])
        return out

    def write(self, layer, k_new, v_new):
        pool, seqs, j, past = self._store(layer, k_new, v_new)
        if pool.window is None:
            k, v = pool.gather(j, seqs, [n + k_new.shape[2] for n in past])
        else:  # the last W − 1 cached positions the new queries can see, then the new ones as computed
            k, v = pool.gather(j, seqs, past, start=max(0, past[0] - (pool.window - 1)))
            k, v = np.concatenate([k, np.asarray(k_new)], axis=2), np.concatenate([v, np.asarray(v_new)], axis=2)
        self._commit(layer, k_new.shape[2])
        return k, v

    def select(self, rows):
        """Keep (and repeat) rows, as beam search does: each new row shares its parent's blocks."""
        rows = [int(r) for r in np.asarray(rows).reshape(-1)]
        new = [[pool.fork(seqs[r]) for r in rows] for pool, _, seqs in self.parts]
        self.release()
        if isinstance(self.pool, LayerPools):
            return PagedKVCache(self.pool, list(zip(*new)), self.in_place)
        return PagedKVCache(self.pool, new[0], self.in_place)

    def truncate(self, length):
        raise NotImplementedError("rolling back a paged cache is not supported")

    def nbytes(self):
        """Bytes of the distinct blocks these sequences hold (a shared block counts once)."""
        total = 0
        for pool, _, seqs in self.parts:
            blocks = {b for s in seqs for b in pool.tables[s] if b != FORGOTTEN}
            total += len(blocks) * pool.block_bytes()
        return total

    def release(self):
        for pool, _, seqs in self.parts:
            for s in seqs:
                pool.release(s)
            seqs.clear()
        self.seqs = []


def paged_cache(pool, in_place=False):
    """A cache factory for :class:`~transformer_np.decoding.LMSession` over a :class:`BlockPool` or a model's
    :class:`LayerPools`: each row of the batch a new sequence (in_place: attention over the blocks in place)."""
    return lambda n_layers, batch: PagedKVCache(pool, [pool.new_sequence() for _ in range(batch)], in_place)


TILE_BLOCKS = 16  # blocks a tile of paged_attention reads at once: 256 positions, core.blockwise's tile


def paged_attention(q, pool, layer, seqs, lengths, mask=None, tile_blocks=TILE_BLOCKS):
    r"""softmax(Q Kᵀ / √D, mask) V of each row b over sequence seqs[b]'s keys and values, read from its blocks in
    place — PagedAttention (Kwon et al. 2023): the block table is walked ``tile_blocks`` blocks at a time, each tile
    of keys and values read from the pool (a copy of that tile only) and folded in by the online softmax
    (core.blockwise.online_softmax), so no row's whole sequence is ever copied.  q (B, H, T, D); lengths: each row's
    positions; mask (B, 1 or H, T, S) with S = max(lengths), or None — positions past a row's own length are
    masked here.  Returns (B, H, T, D)."""
    B, S, bs = len(seqs), max(lengths), pool.block_size
    tables = np.zeros((B, -(-S // bs)), np.int64)  # past a row's table: block 0, its positions masked below
    for b, s in enumerate(seqs):
        table = pool.tables[s][: tables.shape[1]]
        tables[b, :len(table)] = table
    own = np.arange(S)[None, :] < np.asarray(lengths)[:, None]  # (B, S)
    keys = own[:, None, None, :] if mask is None else own[:, None, None, :] & np.asarray(mask, bool)
    k_layer, v_layer = pool.k[layer], pool.v[layer]
    span = tile_blocks * bs

    def tiles():
        for s0 in range(0, S, span):
            ids = tables[:, s0 // bs: (s0 + span + bs - 1) // bs]  # (B, n) blocks of this tile
            n = min(span, S - s0)
            kt = k_layer[ids].transpose(0, 2, 1, 3, 4).reshape(B, k_layer.shape[1], -1, k_layer.shape[-1])[..., :n, :]
            vt = v_layer[ids].transpose(0, 2, 1, 3, 4).reshape(B, v_layer.shape[1], -1, v_layer.shape[-1])[..., :n, :]
            yield s0 + n, kt, vt, keys[..., s0:s0 + n]

    return attention_over_tiles(np.asarray(q), tiles())
