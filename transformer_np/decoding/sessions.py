r"""Decoding sessions: one batch's decoding state — the tokens so far, the KV cache, the logits for the next
token — for a decoder-only LM (:class:`LMSession`) or an encoder-decoder model (:class:`Seq2SeqSession`).

The search functions (:mod:`~transformer_np.decoding.search`) only read ``session.next_logits`` (B, V) and call
``session.append(tokens)`` and ``session.select(rows)``, so each works with both kinds of model and both paths:

* with the cache, a step feeds only the new token: each layer appends its (k, v) and attends over the
  cached ones — O(t) work at step t;
* without it (``use_cache=False``), every step recomputes the whole forward pass over all t tokens —
  O(t²) per step, the plain path the cache must equal.

Prompts of different lengths are left-padded into one batch, with a key-padding mask and per-row positions,
so each row gets exactly the tokens it gets alone.  The caller's prompts are never modified.
Decoding logic runs on the host: logits are brought back with ``to_numpy``.
"""

from __future__ import annotations

import numpy as np

from ..core.backend import array_namespace, device, to_numpy
from ..core.tree import flatten
from ..core.weights import StoredWeight
from ..model.models import decode, encode
from .cache import model_cache, new_cache


def _converter(params):
    """Host (NumPy) arrays -> the library and device of the model's parameters (its first plain array: a stored
    weight, core.weights', is not one)."""
    like = next(a for a in flatten(params).values() if a is not None and not isinstance(a, StoredWeight))
    return lambda a: array_namespace(like).asarray(a, device=device(like))


def as_prompts(prompts, cfg, name="prompts"):
    """A list of 1-D integer NumPy arrays (copies), each non-empty, in range and within max_len."""
    if isinstance(prompts, np.ndarray) and prompts.ndim == 2:
        prompts = list(prompts)
    if not isinstance(prompts, (list, tuple)) or not prompts:
        raise ValueError(f"{name} must be a non-empty list of token-id sequences, got {prompts!r}")
    out = []
    for i, p in enumerate(prompts):
        a = np.array(to_numpy(p) if hasattr(p, "shape") else p)
        if a.ndim != 1 or a.size == 0:
            raise ValueError(f"{name}[{i}] must be a non-empty 1-D sequence of token ids, got shape {a.shape}")
        if not np.issubdtype(a.dtype, np.integer):
            raise TypeError(f"{name}[{i}] must hold integer token ids, got dtype {a.dtype}")
        if a.min() < 0 or a.max() >= cfg.vocab_size:
            raise ValueError(f"{name}[{i}] ids must lie in [0, {cfg.vocab_size}), got values in [{a.min()}, {a.max()}]")
        if a.size > cfg.max_len:
            raise ValueError(f"{name}[{i}] has {a.size} tokens, more than the model's context max_len={cfg.max_len}")
        out.append(a.astype(np.int64))
    return out


class LMSession:
    """Decoding state of a decoder-only LM for a batch of prompts (left-padded to a common length).  The model
    implements the decoder-model protocol (:class:`~transformer_np.model.protocol.DecoderModel`):
    :class:`~transformer_np.DecoderLM` or a pretrained LLM (:class:`~transformer_np.pretrained.llama.LlamaModel`).
    ``make_cache``: the KV cache's factory ``(n_layers, batch) -> KVCache`` (None: :func:`~.cache.model_cache`,
    contiguous with a window's cache where a layer has one; an int8 or a paged one from
    :mod:`transformer_np.efficient`).  ``need_weights``: every forward also keeps its blocks'
    attention weights in ``self.weights`` ([(B, H, T, S) per block]: the prompt's, then each new token's)."""

    def __init__(self, model, prompts, use_cache=True, make_cache=None, need_weights=False):
        self.model, self.cfg, self.use_cache, self.need_weights = model, model.config, use_cache, need_weights
        prompts = as_prompts(prompts, self.cfg)
        B, L = len(prompts), max(len(p) for p in prompts)
        ids = np.zeros((B, L), np.int64)
        real = np.zeros((B, L), bool)
        for b, p in enumerate(prompts):
            ids[b, L - len(p):], real[b, L - len(p):] = p, True
        self.tokens, self.real = ids, real  # (B, t): all tokens so far, and which are not padding
        self.positions = np.maximum(np.cumsum(real, axis=1) - 1, 0)  # (B, t): each row counts its own
        self._arr = _converter(model.params)
        make_cache = model_cache(self.cfg) if make_cache is None else make_cache
        self.cache = make_cache(self.cfg.n_layers, B) if use_cache else None
        self._forward(ids, self.positions)

    def _forward(self, ids, positions):
        key_mask = self._arr(self.real[:, None, None, :])  # (B, 1, 1, t)
        out = self.model.step(self._arr(ids), positions=self._arr(positions), key_mask=key_mask,
                              cache=self.cache, last_only=True, need_weights=self.need_weights)
        logits, self.weights = out if self.need_weights else (out, None)  # (B, 1, V): the next token's only
        self.next_logits = to_numpy(logits[:, -1, :])  # (B, V)

    @property
    def length(self):
        return self.tokens.shape[1]

    def append(self, new):
        """Feed one new token per row, new: (B,) ints."""
        new = np.asarray(new, np.int64)[:, None]  # (B, 1)
        self.tokens = np.concatenate([self.tokens, new], axis=1)
        self.real = np.concatenate([self.real, np.ones_like(new, bool)], axis=1)
        self.positions = np.concatenate([self.positions, self.positions[:, -1:] + 1], axis=1)
        if self.use_cache:
            self._forward(new, self.positions[:, -1:])
        else:
            self._forward(self.tokens, self.positions)

    def select(self, rows):
        """Keep (and repeat) batch rows: rows is an int array of row indices."""
        rows = np.asarray(rows, np.int64)
        self.tokens, self.real, self.positions = self.tokens[rows], self.real[rows], self.positions[rows]
        self.next_logits = self.next_logits[rows]
        if self.cache is not None:
            self.cache = self.cache.select(self._arr(rows))

    def room(self):
        """How many more tokens fit in the context."""
        return self.cfg.max_len - int(self.positions[:, -1].max()) - 1

    def cache_bytes(self):
        return 0 if self.cache is None else self.cache.nbytes()


class Seq2SeqSession:
    """Decoding state of an encoder-decoder model: sources encoded once, targets start with ``bos_id``.
    ``need_weights``: every forward keeps its decoder layers' (self, cross) attention weights in ``self.weights``."""

    def __init__(self, model, sources, bos_id, use_cache=True, need_weights=False):
        self.model, self.cfg, self.use_cache, self.need_weights = model, model.config, use_cache, need_weights
        sources = as_prompts(sources, self.cfg, name="sources")
        if not 0 <= bos_id < self.cfg.vocab_size:
            raise ValueError(f"bos_id must lie in [0, {self.cfg.vocab_size}), got {bos_id}")
        B, S = len(sources), max(len(s) for s in sources)
        pad = self.cfg.pad_id if self.cfg.pad_id is not None else 0
        src = np.full((B, S), pad, np.int64)
        keys = np.zeros((B, S), bool)
        for b, s in enumerate(sources):
            src[b, : len(s)], keys[b, : len(s)] = s, True  # right-padded; padding keys masked
        self._arr = _converter(model.params)
        self.memory_keys = self._arr(keys[:, None, None, :])  # (B, 1, 1, S)
        self.memory, _, _ = encode(model.params, self._arr(src), self.cfg, src_mask=self.memory_keys)
        self.tokens = np.full((B, 1), bos_id, np.int64)
        self.cache = new_cache(self.cfg.n_decoder_layers) if use_cache else None
        self._forward(self.tokens)

    def _forward(self, ids):
        logits, weights = decode(self.model.params, self._arr(ids), self.memory, self.cfg,
                                 memory_keys=self.memory_keys, cache=self.cache, need_weights=self.need_weights)
        self.weights = weights if self.need_weights else None
        self.next_logits = to_numpy(logits[:, -1, :])  # (B, V)

    @property
    def length(self):
        return self.tokens.shape[1]

    def append(self, new):
        new = np.asarray(new, np.int64)[:, None]
        self.tokens = np.concatenate([self.tokens, new], axis=1)
        self._forward(new if self.use_cache else self.tokens)

    def select(self, rows):
        rows = np.asarray(rows, np.int64)
        r = self._arr(rows)
        xp = array_namespace(self.memory)
        self.tokens, self.next_logits = self.tokens[rows], self.next_logits[rows]
        self.memory, self.memory_keys = xp.take(self.memory, r, axis=0), xp.take(self.memory_keys, r, axis=0)
        if self.cache is not None:
            self.cache = self.cache.select(r)

    def room(self):
        return self.cfg.max_len - self.length

    def cache_bytes(self):
        return 0 if self.cache is None else self.cache.nbytes()
