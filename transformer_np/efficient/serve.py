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
from ..decoding.search import check_logits, check_sampling, draw, greedy, next_token_probs
from ..decoding.sessions import LMSession
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
    admitted prompt prefilled whole); in_place: attention reads the blocks in place, a tile at a time
    (paged.paged_attention), instead of gathering each row's whole sequence (a model whose layers call
    ``cache.attend``: the Llama family)."""

    def __init__(self, model, pool, max_batch=8, prefix_cache=True, chunk=None, in_place=True):
        if any(w is not None for w in model.config.windows):
            raise NotImplementedError("the server cannot run a model with sliding-window layers yet: its rows hold "
                                      "different numbers of positions, and such a model draws its window's band by "
                                      "key column, which then is not the key's position")
        self.model, self.pool = model, pool
        self.max_batch = check_positive_int("max_batch", max_batch)
        self.prefix_cache, self.in_place = bool(prefix_cache), bool(in_place)
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
        self.decode_counts = []  # requests decoding (one token each) at each step
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
                                         cache=PagedKVCache(self.pool, [r.seq for r in decodes], self.in_place),
                                         last_only=True)
                logits = check_logits(to_numpy(logits)[:, -1], self.steps)
                chosen += [(r, self._choose(r, row)) for r, row in zip(decodes, logits)]
            for req, n in prefills:
                ids = np.asarray([req.pending[req.computed:req.computed + n]], np.int64)
                logits = self.model.step(ids, cache=PagedKVCache(self.pool, [req.seq], self.in_place), last_only=True)
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
        self.decode_counts.append(len(decodes))
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
        text = self.model.detokenize(req.output, skip_special=True)
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


@dataclasses.dataclass
class Arrival:
    """A request of a workload: when it arrives (seconds after the start; for a turn that ``follows`` another, after
    that request finished), its prompt tokens (a follower's prompt is the earlier request's prompt and output, then
    these), its token limit and sampling settings (Server.submit's keywords)."""

    time: float
    prompt: list
    max_new_tokens: int
    sampling: dict = dataclasses.field(default_factory=dict)
    follows: int | None = None


def _arrivals(workload):
    """A workload as :class:`Arrival` s: (prompt, max_new_tokens) pairs arrive at once, at time 0."""
    return [w if isinstance(w, Arrival) else Arrival(0.0, list(w[0]), int(w[1])) for w in workload]


def _lengths(rng, n, mean, low, high):
    """n lengths drawn from a log-normal of this mean (σ = 0.6: a long right tail, as real prompts and answers
    have), clipped to [low, high]."""
    sigma = 0.6
    x = rng.lognormal(np.log(mean) - sigma**2 / 2, sigma, n)
    return np.clip(np.rint(x), low, high).astype(int)


def poisson_workload(rng, n_requests, rate, vocab_size, prompt_mean=48, output_mean=24, max_prompt=256,
                     max_output=128, system_prompt=0, turns=1, think_s=0.0, sampling=None, shared_system=True):
    r"""A workload of ``n_requests`` requests arriving as a Poisson process of ``rate`` a second (gaps ~ Exp(rate)),
    prompt and output lengths log-normal with these means; ``system_prompt``: that many tokens every first turn
    starts with (``shared_system`` False: each conversation its own — an opening document, say); ``turns``:
    conversations of that many turns, each later turn arriving ``think_s`` after the previous answer, its prompt
    the whole conversation so far plus a new message; ``sampling``: Server.submit's keywords for every request
    (each sampled request gets its own seed).  Returns [:class:`Arrival`]."""
    check_positive_int("n_requests", n_requests)
    check_positive_int("turns", turns)
    system = [int(t) for t in rng.integers(0, vocab_size, system_prompt)]
    prompts = _lengths(rng, n_requests, prompt_mean, 1, max_prompt)
    outputs = _lengths(rng, n_requests, output_mean, 1, max_output)
    t, work = 0.0, []
    for i in range(n_requests):
        turn = i % turns
        message = [int(x) for x in rng.integers(0, vocab_size, prompts[i])]
        settings = dict(sampling or {})
        if settings:
            settings["seed"] = i
        if turn == 0:
            t += rng.exponential(1 / rate)
            if not shared_system:
                system = [int(x) for x in rng.integers(0, vocab_size, system_prompt)]
            work.append(Arrival(t, system + message, int(outputs[i]), settings))
        else:
            work.append(Arrival(think_s, message, int(outputs[i]), settings, follows=i - 1))
    return work


def simulate(model, workload, max_batch=8, n_blocks=256, block_size=16, progress=None, prefix_cache=True,
             chunk=None):
    """Serve a workload in real time with continuous batching: each request submitted when it arrives (a
    workload of (prompt, max_new_tokens) pairs all arrive at once; :class:`Arrival` s at their times, a follower
    after the request it follows), the server stepping while it has work.  Returns what a serving engineer looks
    at: throughput; time to first token, time per output token after the first, end-to-end latency and the time
    between tokens (p50, p90, p99, seconds; end-to-end in steps too); KV blocks in use (peak, mean) and occupancy;
    prefix-cache hit rate; preemptions; mean batch; and the requests.  progress(k) as k more requests finish."""
    work = _arrivals(workload)
    pool = BlockPool.for_model(model, n_blocks, block_size)
    server = Server(model, pool, max_batch=max_batch, prefix_cache=prefix_cache, chunk=chunk)
    followers = {}
    for i, a in enumerate(work):
        if a.follows is not None:
            followers.setdefault(a.follows, []).append(i)
    due = sorted((a.time, i) for i, a in enumerate(work) if a.follows is None)  # (seconds after start, index)
    handles, owner = {}, {}
    t0 = time.perf_counter()
    done = 0
    while due or server.waiting or server.running:
        now = time.perf_counter() - t0
        while due and due[0][0] <= now:
            at, i = due.pop(0)
            a = work[i]
            before = handles[a.follows] if a.follows is not None else None
            prompt = (before.prompt + before.output if before else []) + a.prompt
            handles[i] = server.submit(prompt, a.max_new_tokens, arrival=t0 + at, **a.sampling)
            owner[handles[i].id] = i
        if not (server.waiting or server.running):
            time.sleep(max(0.0, due[0][0] - (time.perf_counter() - t0)))
            continue
        server.step()
        for req in server.finished[done:]:
            for j in followers.get(owner[req.id], ()):
                due.append((req.finished_time - t0 + work[j].time, j))
            due.sort()
        if progress is not None and len(server.finished) > done:
            progress(len(server.finished) - done)
        done = len(server.finished)
    seconds = time.perf_counter() - t0
    reqs = [handles[i] for i in range(len(work))]
    tokens = sum(len(h.output) for h in reqs)

    def pct(values):
        values = np.asarray(values, float)
        return {p: float(np.percentile(values, p)) if values.size else None for p in (50, 90, 99)}

    tpot = [(h.finished_time - h.first_token_time) / (len(h.output) - 1) for h in reqs if len(h.output) > 1]
    used = np.array([o[1] for o in server.occupancy])
    return dict(requests=len(reqs), tokens=tokens, seconds=seconds, tokens_per_s=tokens / seconds,
                steps=server.steps, ttft_s=pct([h.ttft for h in reqs]), tpot_s=pct(tpot),
                latency_s=pct([h.finished_time - h.submitted_time for h in reqs]),
                latency_steps=pct([h.finished_step - h.submitted_step + 1 for h in reqs]),
                tbt_s=pct(np.concatenate([h.gaps for h in reqs])), peak_blocks=pool.peak_blocks,
                mean_blocks=float(used.mean()) if used.size else 0.0, n_blocks=n_blocks,
                block_bytes=pool.block_bytes(), prefix_hit_rate=server.cache_hits / max(1, server.prompt_tokens),
                preemptions=server.preemptions, mean_batch=float(np.mean([o[0] for o in server.occupancy])),
                handles=reqs, server=server)


def simulate_static(model, workload, max_batch=8):
    """The same workload served by static batching: requests taken in arrival order, max_batch at a time, each
    batch starting once its last request has arrived and the previous batch has finished, and decoding (greedy,
    left-padded, with the KV cache) until its longest request is done.  Followers are not supported (a static
    batch cannot take a turn that depends on another's answer).  Returns tokens, seconds and tokens/s."""
    work = _arrivals(workload)
    if any(a.follows is not None for a in work):
        raise ValueError("simulate_static: a workload of conversations (follows) needs continuous batching")
    order = sorted(range(len(work)), key=lambda i: work[i].time)
    t0, tokens = time.perf_counter(), 0
    for b in range(0, len(order), max_batch):
        batch = [work[i] for i in order[b:b + max_batch]]
        time.sleep(max(0.0, max(a.time for a in batch) - (time.perf_counter() - t0)))
        out = greedy(LMSession(model, [a.prompt for a in batch]), max(a.max_new_tokens for a in batch))
        tokens += sum(min(len(o), a.max_new_tokens) for o, a in zip(out, batch))
    seconds = time.perf_counter() - t0
    return dict(tokens=tokens, seconds=seconds, tokens_per_s=tokens / seconds)
