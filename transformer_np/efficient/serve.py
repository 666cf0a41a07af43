r"""A serving engine as vLLM and SGLang teach it, on the paged KV cache: continuous batching (Orca's iteration-level
scheduling, Yu et al. 2022), automatic prefix caching, chunked prefill, blocks on demand with preemption, and
sampling per request.

A static batch runs until its longest request finishes, its finished rows idling.  Here the batch is re-formed
at **every step**:

* finished requests leave; their blocks return to the pool — the whole blocks of their tokens stay **cached**
  (``prefix_cache``), keyed by their tokens and the prefix before them, so a later request whose prompt starts
  the same way (a shared system prompt, the next turn of a conversation) takes them instead of recomputing them;
  a cached block no request holds is evicted, least recently used first, only when the free list runs out;
* every running request in its decode phase advances by one token — each row at its own position, with a key
  mask over its own length — taking a new block only when it crosses into one (**blocks on demand**); when the
  pool has none left, the youngest running request is **preempted**: its blocks are released and it waits, first
  in line, to be recomputed (its prompt and its tokens so far, much of them from the prefix cache) and then
  continues exactly where it stopped;
* the rest of the step's token budget (``chunk``) prefills waiting prompts, a chunk at a time (**chunked
  prefill**, Sarathi-Serve / vLLM v1), so a long prompt never stalls the running requests for more than one
  chunk; ``chunk=None`` prefills each admitted prompt whole.

Each request samples with its own settings (greedy, or temperature / top-k / top-p from its own seeded
generator) and stops at its end token, a stop string (a text model's) or its token limit.  A request's output is
what decoding it alone gives: batching, chunking, caching and preemption change when its tokens are computed,
not which.

    server = Server(model, BlockPool.for_model(model, n_blocks=256), max_batch=8, chunk=256)
    handle = server.submit(prompt_ids, max_new_tokens=32, temperature=0.7, seed=1)
    server.run()                      # or server.step() in your own loop
    handle.output                     # the new token ids; handle.finish_reason "stop" or "length"
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
from ..decoding.search import check_logits, check_sampling, draw, next_token_probs
from ..model.protocol import TextLLM
from .paged import BlockPool, PagedKVCache


@dataclasses.dataclass
class Request:
    """One request, its sampling settings and what became of it (steps count the server's iterations; times are
    ``time.perf_counter()`` seconds)."""

    id: int
    prompt: list
    max_new_tokens: int
    eos_id: int | None = None
    temperature: float | None = None  # None (or 0): greedy
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: tuple = ()  # stop strings (a text model's): the output ends where one first appears
    output: list = dataclasses.field(default_factory=list)
    seq: int | None = None  # its sequence in the block pool while it runs
    computed: int = 0  # positions whose keys and values are in its blocks
    cached_tokens: int = 0  # prompt tokens taken from the prefix cache when it was first admitted
    preemptions: int = 0
    finish_reason: str | None = None  # "stop" (its end token or a stop string), "length" or "cancelled"
    stop_at: int | None = None  # where the first stop string starts in the output's text
    submitted_step: int = 0
    admitted_step: int | None = None
    finished_step: int | None = None
    submitted_time: float = 0.0  # its arrival
    first_token_time: float | None = None
    token_times: list = dataclasses.field(default_factory=list)  # when each output token was chosen
    finished_time: float | None = None
    rng: np.random.Generator | None = dataclasses.field(default=None, repr=False)

    @property
    def done(self):
        return self.finished_step is not None

    @property
    def cancelled(self):
        return self.finish_reason == "cancelled"

    @property
    def greedy(self):
        return not self.temperature and self.top_k is None and self.top_p is None

    @property
    def pending(self):
        """The tokens whose keys and values must be cached before its next decode step: the prompt and every
        output token but the last (which that step feeds)."""
        return self.prompt + self.output[:-1]

    @property
    def prefilled(self):
        return self.seq is not None and self.computed == len(self.pending) and bool(self.output)

    @property
    def ttft(self):
        """Time to first token: from arrival to the first output token."""
        return None if self.first_token_time is None else self.first_token_time - self.submitted_time

    @property
    def gaps(self):
        """Times between consecutive output tokens."""
        return np.diff(self.token_times)


class Server:
    """The engine: continuous batching over a :class:`~.paged.BlockPool` (the module docstring says how).
    max_batch: requests running at once; prefix_cache: keep and reuse whole blocks of tokens seen before; chunk:
    tokens a step may compute — one per decoding request, the rest for prefill chunks (None: no limit, each
    admitted prompt prefilled whole)."""

    def __init__(self, model, pool, max_batch=8, prefix_cache=True, chunk=None):
        if any(w is not None for w in model.config.windows):
            raise NotImplementedError("the server cannot run a model with sliding-window layers yet: its rows hold "
                                      "different numbers of positions, and such a model draws its window's band by "
                                      "key column, which then is not the key's position")
        self.model, self.pool = model, pool
        self.max_batch = check_positive_int("max_batch", max_batch)
        self.prefix_cache = bool(prefix_cache)
        self.chunk = None if chunk is None else check_positive_int("chunk", chunk)
        if self.chunk is not None and self.chunk <= self.max_batch:
            raise ValueError(f"chunk={chunk} must exceed max_batch={max_batch}: a step's budget first gives every "
                             "decoding request its token")
        self.waiting, self.running, self.finished = [], [], []
        self.steps = 0
        self.preemptions = 0
        self.prompt_tokens = self.cache_hits = 0  # prompt tokens admitted, and how many came from the prefix cache
        self.occupancy = []  # (running requests, blocks in use, tokens cached) after each step
        self.timeline = []  # the request ids that got a token at each step
        self.prefill_timeline = []  # (request id, tokens prefilled) of each step
        self._next_id = 0

    # --- requests in ---
    def submit(self, prompt, max_new_tokens, eos_id=None, *, temperature=None, top_k=None, top_p=None, seed=None,
               stop=(), arrival=None):
        """Queue a request; returns its :class:`Request`, whose ``output`` fills as the server steps.  Token ids
        and eos_id must be integers in the vocabulary (a float, a bool or a string is refused, not coerced), the
        sampling settings valid, stop strings only for a text model, and the whole run must fit in the block pool
        (a request that never could is refused here, not at run()).  arrival: when it arrived (perf_counter
        seconds; default now) — its time to first token counts from then."""
        prompt = list(prompt)
        if not prompt:
            raise ValueError("prompt must hold at least one token")
        check_positive_int("max_new_tokens", max_new_tokens)
        V = self.model.config.vocab_size
        prompt = [check_int("prompt token", t, low=0, high=V - 1) for t in prompt]
        if eos_id is not None:
            eos_id = check_int("eos_id", eos_id, low=0, high=V - 1)
        if temperature is not None or top_k is not None or top_p is not None:
            check_sampling(1.0 if not temperature else temperature, top_k, top_p)
        if seed is not None:
            seed = check_int("seed", seed, low=0)
        stop = tuple(stop)
        if stop and not isinstance(self.model, TextLLM):
            raise ValueError("stop strings need a model with a tokenizer (a TextLLM); this one has token ids only")
        if not all(isinstance(s, str) and s for s in stop):
            raise ValueError(f"stop must be non-empty strings, got {stop!r}")
        if len(prompt) + max_new_tokens > self.model.config.max_len:
            raise ValueError(f"prompt ({len(prompt)}) + max_new_tokens ({max_new_tokens}) exceed "
                             f"max_len={self.model.config.max_len}")
        need = -(-(len(prompt) + max_new_tokens) // self.pool.block_size)
        if need > self.pool.n_blocks:
            raise ValueError(f"prompt ({len(prompt)}) + max_new_tokens ({max_new_tokens}) need {need} blocks of "
                             f"{self.pool.block_size} positions, more than the whole pool's {self.pool.n_blocks}")
        req = Request(self._next_id, prompt, max_new_tokens, eos_id, temperature, top_k, top_p, seed, stop,
                      submitted_step=self.steps, submitted_time=time.perf_counter() if arrival is None else arrival,
                      rng=np.random.default_rng(seed))
        self._next_id += 1
        self.waiting.append(req)
        return req

    # --- blocks ---
    def _fits(self, req, n):
        """How many of n new positions req's blocks and the pool's available blocks can hold (blocks are reserved
        as each request is scheduled, so the next one sees only what is left)."""
        room = len(self.pool.tables[req.seq]) * self.pool.block_size - self.pool.lengths[req.seq]
        return min(n, room + self.pool.available_blocks * self.pool.block_size)

    def _preempt(self, req):
        """Release req's blocks (its whole blocks stay cached) and put it first in line, to be recomputed."""
        self.pool.release(req.seq)
        req.seq, req.computed = None, 0
        req.preemptions += 1
        self.preemptions += 1
        self.running.remove(req)
        self.waiting.insert(0, req)

    # --- one step ---
    def _schedule(self):
        """(decoding requests, [(request, prefill tokens)], requests admitted now) for this step."""
        decodes = []
        for req in [r for r in self.running if r.prefilled]:  # oldest first: a block each when they need one
            while req in self.running and self._fits(req, 1) < 1:
                self._preempt(self.running[-1])  # the youngest (perhaps req itself)
            if req in self.running:
                self.pool.reserve(req.seq, 1)  # its block now, so the next request sees what is left
                decodes.append(req)
        budget = float("inf") if self.chunk is None else self.chunk - len(decodes)
        prefills = []
        for req in [r for r in self.running if not r.prefilled]:  # prompts begun in earlier steps
            n = self._fits(req, min(len(req.pending) - req.computed, budget))
            if n > 0:
                self.pool.reserve(req.seq, n)
                prefills.append((req, n))
                budget -= n
        admitted = []
        while self.waiting and len(self.running) < self.max_batch and budget > 0:
            req = self.waiting[0]
            pending = req.pending
            # a new prompt keeps its last token to compute (its logits give the first token)
            blocks = self.pool.match(pending if req.output else pending[:-1]) if self.prefix_cache else []
            kept = sum(1 for b in blocks if b in self.pool.evictable)  # cached blocks no one holds: taking them
            cached = len(blocks) * self.pool.block_size               # leaves fewer to allocate
            n = min(len(pending) - cached, budget)
            need = -(-(cached + n) // self.pool.block_size) - len(blocks)
            if need > self.pool.available_blocks - kept:
                break  # it waits for blocks
            self.waiting.pop(0)
            req.seq, req.computed = self.pool.sequence_from_cache(blocks), cached
            if req.admitted_step is None:  # first admission: the prefix cache's hits are counted once
                req.admitted_step, req.cached_tokens = self.steps, cached
                self.prompt_tokens += len(req.prompt)
                self.cache_hits += cached
            self.running.append(req)
            admitted.append(req)
            if n > 0:
                self.pool.reserve(req.seq, n)
                prefills.append((req, n))
                budget -= n
        return decodes, prefills, admitted

    def step(self):
        """One iteration: schedule (decodes, prefill chunks, admissions, preemptions), run the model, choose each
        request's token."""
        decodes, prefills, admitted = self._schedule()
        if not (decodes or prefills or admitted or self.running) and self.waiting:
            req = self.waiting[0]
            raise MemoryError(f"request {req.id} cannot start: its {len(req.pending)} tokens need "
                              f"{-(-len(req.pending) // self.pool.block_size)} blocks; the pool has "
                              f"{self.pool.available_blocks} available")
        touched = decodes + [r for r, _ in prefills]
        try:
            chosen = []
            if decodes:
                lengths = np.array([r.computed for r in decodes])  # (B,) positions cached per row
                ids = np.array([[r.output[-1]] for r in decodes], np.int64)  # (B, 1): each row's last token
                S = int(lengths.max()) + 1
                key_mask = (np.arange(S)[None, :] <= lengths[:, None])[:, None, None, :]  # (B, 1, 1, S)
                logits = self.model.step(ids, positions=lengths[:, None], key_mask=key_mask,
                                         cache=PagedKVCache(self.pool, [r.seq for r in decodes]), last_only=True)
                logits = check_logits(to_numpy(logits)[:, -1], self.steps)
                chosen += [(r, self._choose(r, row)) for r, row in zip(decodes, logits)]
            for req, n in prefills:
                ids = np.asarray([req.pending[req.computed:req.computed + n]], np.int64)
                logits = self.model.step(ids, cache=PagedKVCache(self.pool, [req.seq]), last_only=True)
                if req.computed + n == len(req.pending) and not req.output:  # the prompt's last chunk
                    chosen.append((req, self._choose(req, check_logits(to_numpy(logits)[:, -1], self.steps)[0])))
        except BaseException:  # the cache may hold this step's K/V: the step never happened
            for req in touched:
                if req.seq is not None:
                    self.pool.lengths[req.seq] = req.computed
            for req in reversed(admitted):  # back in line, first, holding no block
                self.running.remove(req)
                self.pool.release(req.seq)
                req.seq, req.computed = None, 0
                self.waiting.insert(0, req)
            raise
        now = time.perf_counter()
        for req in decodes:
            req.computed += 1
        for req, n in prefills:
            req.computed += n
        if self.prefix_cache:
            for req in touched:
                self.pool.register(req.seq, req.prompt + req.output)
        self.timeline.append([r.id for r, _ in chosen])
        self.prefill_timeline.append([(r.id, n) for r, n in prefills])
        for req, token in chosen:
            self._emit(req, token, now)
        self.running = [r for r in self.running if not r.done]
        self.steps += 1
        self.occupancy.append((len(self.running), self.pool.used_blocks,
                               sum(self.pool.lengths[r.seq] for r in self.running)))

    def _choose(self, req, logits):
        """req's next token from its logits (V,): argmax, or a draw from its own generator."""
        if req.greedy:
            return int(np.argmax(logits))
        p = next_token_probs(logits[None], req.temperature or 1.0, req.top_k, req.top_p)
        return int(draw(p, req.rng)[0])

    def _emit(self, req, token, now):
        req.output.append(token)
        req.token_times.append(now)
        if req.first_token_time is None:
            req.first_token_time = now
        if req.eos_id is not None and token == req.eos_id:
            self._finish(req, "stop")
        elif req.stop and self._stop_at(req) is not None:
            self._finish(req, "stop")
        elif len(req.output) == req.max_new_tokens:
            self._finish(req, "length")

    def _stop_at(self, req):
        text = self.model.detokenize(req.output)
        found = [i for i in (text.find(s) for s in req.stop) if i >= 0]
        req.stop_at = min(found) if found else None
        return req.stop_at

    def _finish(self, req, reason):
        req.finish_reason, req.finished_step, req.finished_time = reason, self.steps, time.perf_counter()
        if req.seq is not None:
            self.pool.release(req.seq)
        self.finished.append(req)

    def cancel(self, req):
        """Stop ``req`` (a waiting or running request): it leaves its queue, its blocks go back to the pool, and
        it is finished with reason "cancelled" and the tokens it had.  Returns False if it was already done."""
        if req.done:
            return False
        if req in self.waiting:
            self.waiting.remove(req)
        else:
            self.running.remove(req)
        self._finish(req, "cancelled")
        return True

    def run(self, max_steps=100_000, progress=None):
        """Step until every submitted request is finished.  Returns the finished requests, in finishing order.
        progress(k) after each step that finished k requests, if given (a progress bar's update)."""
        while self.waiting or self.running:
            if self.steps >= max_steps:
                raise RuntimeError(f"not finished after {max_steps} steps")
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
