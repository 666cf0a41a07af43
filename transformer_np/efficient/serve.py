r"""Continuous batching (Orca's iteration-level scheduling, Yu et al. 2022) on the paged KV cache.

A static batch runs until its longest request finishes, its finished rows idling.  Here the batch is re-formed
at **every step**: finished requests leave (their cache blocks return to the pool), waiting requests are
admitted into the free slots (their prompt prefilled, their blocks allocated — the whole blocks of a prompt
prefix that a running request already holds are shared, not recomputed), and one decode step advances every
running request by one token — each row at its own position, with a key mask over its own length.

    server = Server(model, BlockPool.for_model(model, n_blocks=256), max_batch=8)
    handle = server.submit(prompt_ids, max_new_tokens=32)
    server.run()                      # or server.step() in your own loop
    handle.output                     # the new token ids, exactly what greedy decoding of it alone gives
    server.cancel(handle)             # or stop it early: its blocks go back to the pool

An error inside a step (a model that raises, logits that are NaN) leaves the server as it was before that step:
a request whose prefill failed is still first in the queue and holds no block, and the running requests' caches
are rolled back to the lengths they had — so after the cause is fixed, ``run()`` resumes with exactly the tokens an
uninterrupted run gives.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from ..core.backend import to_numpy
from ..core.checks import check_int, check_positive_int
from ..decoding.search import check_logits
from .paged import BlockPool, PagedKVCache


@dataclasses.dataclass
class Request:
    """One request and what became of it (steps count the server's iterations)."""

    id: int
    prompt: list
    max_new_tokens: int
    eos_id: int | None = None
    output: list = dataclasses.field(default_factory=list)
    seq: int | None = None  # its sequence in the block pool while it runs
    shared_tokens: int = 0  # prompt tokens whose K/V blocks it shared with a running request
    submitted_step: int = 0
    admitted_step: int | None = None
    finished_step: int | None = None
    submitted_time: float = 0.0
    finished_time: float | None = None
    cancelled: bool = False  # stopped by Server.cancel before it was done

    @property
    def done(self):
        return self.finished_step is not None


class Server:
    """Greedy decoding of many requests with continuous batching over a :class:`~.paged.BlockPool`."""

    def __init__(self, model, pool, max_batch=8):
        if any(w is not None for w in model.config.windows):
            raise NotImplementedError("the server cannot run a model with sliding-window layers yet: its rows hold "
                                      "different numbers of positions, and such a model draws its window's band by "
                                      "key column, which then is not the key's position")
        self.model, self.pool = model, pool
        self.max_batch = check_positive_int("max_batch", max_batch)
        self.waiting, self.running, self.finished = [], [], []
        self.steps = 0
        self.occupancy = []  # (running requests, blocks in use, tokens cached) after each step
        self.timeline = []  # the request ids decoded at each step
        self._next_id = 0

    def submit(self, prompt, max_new_tokens, eos_id=None):
        """Queue a request; returns its :class:`Request`, whose ``output`` fills as the server steps.  Token ids
        and eos_id must be integers in the vocabulary (a float, a bool or a string is refused, not coerced), and
        the whole run must fit in the block pool (a request that never could is refused here, not at run())."""
        prompt = list(prompt)
        if not prompt:
            raise ValueError("prompt must hold at least one token")
        check_positive_int("max_new_tokens", max_new_tokens)
        V = self.model.config.vocab_size
        prompt = [check_int("prompt token", t, low=0, high=V - 1) for t in prompt]
        if eos_id is not None:
            eos_id = check_int("eos_id", eos_id, low=0, high=V - 1)
        if len(prompt) + max_new_tokens > self.model.config.max_len:
            raise ValueError(f"prompt ({len(prompt)}) + max_new_tokens ({max_new_tokens}) exceed "
                             f"max_len={self.model.config.max_len}")
        need = -(-(len(prompt) + max_new_tokens) // self.pool.block_size)
        if need > self.pool.n_blocks:
            raise ValueError(f"prompt ({len(prompt)}) + max_new_tokens ({max_new_tokens}) need {need} blocks of "
                             f"{self.pool.block_size} positions, more than the whole pool's {self.pool.n_blocks}")
        req = Request(self._next_id, prompt, max_new_tokens, eos_id, submitted_step=self.steps,
                      submitted_time=time.perf_counter())
        self._next_id += 1
        self.waiting.append(req)
        return req

    def _blocks_needed(self, req):
        return -(-(len(req.prompt) + req.max_new_tokens) // self.pool.block_size)

    def _admit(self):
        """Move waiting requests into free slots while the pool can hold their whole run; prefill each."""
        while self.waiting and len(self.running) < self.max_batch:
            req = self.waiting[0]
            reserved = sum(self._blocks_needed(r) - len(self.pool.tables[r.seq]) for r in self.running)
            if self._blocks_needed(req) > len(self.pool.free) - reserved:
                break  # admitted requests never run out of blocks mid-way: this one waits
            source, shared = self._shared_prefix(req)
            seq = self.pool.new_sequence(source, shared)
            try:  # admitted only once its prefill has succeeded: else it stays first in line, holding no block
                logits = self.model.step(np.asarray([req.prompt[shared:]], np.int64),
                                         cache=PagedKVCache(self.pool, [seq]), last_only=True)
                token = int(np.argmax(check_logits(to_numpy(logits)[:, -1], self.steps)[0]))
            except BaseException:
                self.pool.release(seq)
                raise
            self.waiting.pop(0)
            req.seq, req.admitted_step, req.shared_tokens = seq, self.steps, shared
            self._emit(req, token)
            if not req.done:
                self.running.append(req)

    def _shared_prefix(self, req):
        """(a running sequence, n tokens): the longest prefix of req's prompt, in whole blocks and short of its
        last token, whose keys and values a running request already holds — shared instead of recomputed."""
        bs, best = self.pool.block_size, (None, 0)
        for other in self.running:
            n = 0
            limit = min(len(req.prompt) - 1, len(other.prompt))
            while n < limit and req.prompt[n] == other.prompt[n]:
                n += 1
            n -= n % bs
            if n > best[1]:
                best = (other.seq, n)
        return best

    def _emit(self, req, token):
        req.output.append(token)
        if len(req.output) == req.max_new_tokens or (req.eos_id is not None and token == req.eos_id):
            req.finished_step, req.finished_time = self.steps, time.perf_counter()
            self.pool.release(req.seq)
            self.finished.append(req)

    def step(self):
        """One iteration: admit what fits, then one decode step for every running request."""
        self._admit()
        batch = [r for r in self.running if not r.done]
        self.timeline.append([r.id for r in batch])
        if batch:
            lengths = np.array([self.pool.lengths[r.seq] for r in batch])  # (B,) positions cached per row
            ids = np.array([[r.output[-1]] for r in batch], np.int64)  # (B, 1): each row's last token
            S = int(lengths.max()) + 1
            key_mask = (np.arange(S)[None, :] <= lengths[:, None])[:, None, None, :]  # (B, 1, 1, S)
            try:
                logits = self.model.step(ids, positions=lengths[:, None], key_mask=key_mask,
                                         cache=PagedKVCache(self.pool, [r.seq for r in batch]), last_only=True)
                tokens = np.argmax(check_logits(to_numpy(logits)[:, -1], self.steps), axis=-1)
            except BaseException:  # the cache may have committed this step's K/V: the step never happened
                for r, n in zip(batch, lengths):
                    self.pool.lengths[r.seq] = int(n)
                raise
            for req, token in zip(batch, tokens):
                self._emit(req, int(token))
        self.running = [r for r in self.running if not r.done]
        self.steps += 1
        self.occupancy.append((len(self.running), self.pool.used_blocks, sum(self.pool.lengths.values())))

    def cancel(self, req):
        """Stop ``req`` (a waiting or running request): it leaves its queue, its blocks go back to the pool, and
        it is finished with ``cancelled`` set and the tokens it had.  Returns False if it was already done."""
        if req.done:
            return False
        if req in self.waiting:
            self.waiting.remove(req)
        else:
            self.running.remove(req)
            self.pool.release(req.seq)
        req.cancelled, req.finished_step, req.finished_time = True, self.steps, time.perf_counter()
        self.finished.append(req)
        return True

    def run(self, max_steps=100_000, progress=None):
        """Step until every submitted request is finished.  Returns the finished requests, in finishing order.
        progress(k) after each step that finished k requests, if given (a progress bar's update)."""
        while self.waiting or self.running:
            if self.steps >= max_steps:
                raise RuntimeError(f"not finished after {max_steps} steps")
            if not self.running and self.waiting and self._blocks_needed(self.waiting[0]) > len(self.pool.free):
                raise MemoryError(f"request {self.waiting[0].id} needs {self._blocks_needed(self.waiting[0])} "
                                  f"blocks; the pool has {len(self.pool.free)} free")
            done = len(self.finished)
            self.step()
            if progress is not None and len(self.finished) > done:
                progress(len(self.finished) - done)
        return self.finished


def random_workload(rng, n_requests, vocab_size, prompt_range=(8, 64), output_range=(4, 48)):
    """n_requests (prompt ids, max_new_tokens) pairs with lengths drawn uniformly from the ranges."""
    return [([int(t) for t in rng.integers(0, vocab_size, int(rng.integers(prompt_range[0], prompt_range[1] + 1)))],
             int(rng.integers(output_range[0], output_range[1] + 1))) for _ in range(n_requests)]


def simulate(model, workload, max_batch=8, n_blocks=256, block_size=16, progress=None):
    """Serve a workload with continuous batching; returns what a serving engineer looks at: throughput, latency
    percentiles (seconds and steps), peak KV blocks and batch occupancy, and the requests.  progress(k) as k more
    requests finish."""
    pool = BlockPool.for_model(model, n_blocks, block_size)
    server = Server(model, pool, max_batch=max_batch)
    t0 = time.perf_counter()
    handles = [server.submit(p, n) for p, n in workload]
    server.run(progress=progress)
    seconds = time.perf_counter() - t0
    latency = np.array([h.finished_time - h.submitted_time for h in handles])
    steps = np.array([h.finished_step - h.submitted_step + 1 for h in handles])
    tokens = sum(len(h.output) for h in handles)
    return dict(requests=len(handles), tokens=tokens, seconds=seconds, tokens_per_s=tokens / seconds,
                steps=server.steps, latency_s={p: float(np.percentile(latency, p)) for p in (50, 90, 99)},
                latency_steps={p: float(np.percentile(steps, p)) for p in (50, 90, 99)},
                peak_blocks=pool.peak_blocks, block_bytes=pool.block_bytes(),
                mean_batch=float(np.mean([o[0] for o in server.occupancy])), handles=handles, server=server)
