r"""Generation: greedy, sampled and beam-search decoding, with or without the KV cache, batched.

A *session* holds one batch's decoding state — the tokens so far, the KV cache, the logits for the next
token — for a decoder-only LM (:class:`LMSession`) or an encoder-decoder model (:class:`Seq2SeqSession`).
The decoding functions only read ``session.next_logits`` (B, V) and call ``session.append(tokens)`` and
``session.select(rows)``, so each works with both kinds of model and both paths:

* with the cache, a step feeds only the new token: each layer appends its (k, v) and attends over the
  cached ones — O(t) work at step t;
* without it (``use_cache=False``), every step recomputes the whole forward pass over all t tokens —
  O(t²) per step, the plain path the cache must equal.

Prompts of different lengths are left-padded into one batch, with a key-padding mask and per-row positions,
so each row gets exactly the tokens it gets alone.  The caller's prompts are never modified.
Decoding logic runs on the host: logits are brought back with ``to_numpy``.
"""

from __future__ import annotations

import math

import numpy as np

from .backend import array_namespace, device, to_numpy
from .cache import cache_nbytes, new_cache
from .model import decode, encode, lm_forward
from .nn import log_softmax, softmax


# --- sessions --------------------------------------------------------------------------------------
def _converter(params):
    """Host (NumPy) arrays -> the library and device of the model's parameters."""
    like = params["embed"]["table"]
    return lambda a: array_namespace(like).asarray(a, device=device(like))


def _as_prompts(prompts, cfg, name="prompts"):
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
    """Decoding state of a decoder-only LM for a batch of prompts (left-padded to a common length)."""

    def __init__(self, model, prompts, use_cache=True):
        self.model, self.cfg, self.use_cache = model, model.config, use_cache
        prompts = _as_prompts(prompts, self.cfg)
        B, L = len(prompts), max(len(p) for p in prompts)
        ids = np.zeros((B, L), np.int64)
        real = np.zeros((B, L), bool)
        for b, p in enumerate(prompts):
            ids[b, L - len(p):], real[b, L - len(p):] = p, True
        self.tokens, self.real = ids, real  # (B, t): all tokens so far, and which are not padding
        self.positions = np.maximum(np.cumsum(real, axis=1) - 1, 0)  # (B, t): each row counts its own
        self._arr = _converter(model.params)
        self.cache = new_cache(self.cfg.n_decoder_layers) if use_cache else None
        self._forward(ids, self.positions)

    def _forward(self, ids, positions):
        key_mask = self._arr(self.real[:, None, None, :])  # (B, 1, 1, t)
        logits, _ = lm_forward(self.model.params, self._arr(ids), self.cfg, positions=self._arr(positions),
                               key_mask=key_mask, cache=self.cache)
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
            self.cache = [layer.select(self._arr(rows)) for layer in self.cache]

    def room(self):
        """How many more tokens fit in the context."""
        return self.cfg.max_len - int(self.positions[:, -1].max()) - 1

    def cache_bytes(self):
        return 0 if self.cache is None else cache_nbytes(self.cache)


class Seq2SeqSession:
    """Decoding state of an encoder-decoder model: sources encoded once, targets start with ``bos_id``."""

    def __init__(self, model, sources, bos_id, use_cache=True):
        self.model, self.cfg, self.use_cache = model, model.config, use_cache
        sources = _as_prompts(sources, self.cfg, name="sources")
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
        logits, _ = decode(self.model.params, self._arr(ids), self.memory, self.cfg,
                           memory_keys=self.memory_keys, cache=self.cache)
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
            self.cache = [layer.select(r) for layer in self.cache]

    def room(self):
        return self.cfg.max_len - self.length

    def cache_bytes(self):
        return 0 if self.cache is None else cache_nbytes(self.cache)


# --- turning logits into a next token --------------------------------------------------------------
def check_sampling(temperature=1.0, top_k=None, top_p=None, vocab_size=None):
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1):
        raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}")
    if top_p is not None and not (isinstance(top_p, (int, float)) and 0 < top_p <= 1):
        raise ValueError(f"top_p must lie in (0, 1], got {top_p!r}")


def next_token_probs(logits, temperature=1.0, top_k=None, top_p=None):
    r"""p = softmax(logits / T) restricted to the k most likely tokens and then to the smallest set whose
    probability reaches top_p (nucleus), renormalised.  logits: (B, V) -> (B, V) rows summing to 1."""
    check_sampling(temperature, top_k, top_p)
    z = np.asarray(logits, np.float64) / temperature  # (B, V)
    keep = np.ones(z.shape, bool)
    order = np.argsort(-z, axis=-1, kind="stable")  # (B, V): most likely first
    if top_k is not None and top_k < z.shape[-1]:
        np.put_along_axis(keep, order[:, top_k:], False, axis=-1)
    if top_p is not None and top_p < 1:
        p_sorted = np.take_along_axis(softmax(z, mask=keep), order, axis=-1)
        before = np.cumsum(p_sorted, axis=-1) - p_sorted  # mass of the more likely tokens
        np.put_along_axis(keep, order, np.take_along_axis(keep, order, axis=-1) & (before < top_p), axis=-1)
    return softmax(z, mask=keep)


def _check_run(session, max_new_tokens, eos_id):
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
    if max_new_tokens > session.room() + 1:
        raise ValueError(f"max_new_tokens={max_new_tokens} does not fit: the context has room for "
                         f"{session.room() + 1} more tokens (max_len={session.cfg.max_len})")
    if eos_id is not None and not 0 <= eos_id < session.cfg.vocab_size:
        raise ValueError(f"eos_id must lie in [0, {session.cfg.vocab_size}), got {eos_id}")


def _run(session, max_new_tokens, eos_id, choose, on_step=None):
    """The loop shared by greedy and sampling: choose(logits) -> (B,) tokens; rows stop at EOS."""
    _check_run(session, max_new_tokens, eos_id)
    B = session.next_logits.shape[0]
    out = [[] for _ in range(B)]
    done = np.zeros(B, bool)
    for step in range(max_new_tokens):
        tokens = choose(session.next_logits)
        if on_step is not None:
            on_step(step, session, tokens)
        for b in np.flatnonzero(~done):
            out[b].append(int(tokens[b]))
        done |= (tokens == eos_id) if eos_id is not None else False
        if done.all() or step == max_new_tokens - 1:
            break
        session.append(tokens)  # finished rows keep going in lockstep; what they produce is dropped
    return out


def greedy(session, max_new_tokens, eos_id=None, on_step=None):
    """Generate the most likely token at every step.  Returns one list of new token ids per row (EOS kept)."""
    return _run(session, max_new_tokens, eos_id, lambda logits: np.argmax(logits, axis=-1), on_step)


def sample(session, max_new_tokens, *, rng, temperature=1.0, top_k=None, top_p=None, eos_id=None, on_step=None):
    """Draw each token from next_token_probs(logits, temperature, top_k, top_p), with a np.random.Generator."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    check_sampling(temperature, top_k, top_p)

    def choose(logits):
        p = next_token_probs(logits, temperature, top_k, top_p)  # (B, V)
        u = rng.random((p.shape[0], 1))
        return np.minimum((np.cumsum(p, axis=-1) <= u).sum(axis=-1), p.shape[-1] - 1)  # inverse CDF

    return _run(session, max_new_tokens, eos_id, choose, on_step)


def length_penalty(length, alpha):
    r"""lp(Y) = ((5 + |Y|) / 6)^\alpha  (Wu et al. 2016); alpha = 0 ranks by total log-probability."""
    return ((5.0 + length) / 6.0) ** alpha


def beam_search(session, beam_width, max_new_tokens, eos_id=None, alpha=0.0, on_step=None):
    r"""Keep the ``beam_width`` highest-scoring partial sequences at each step (score: sum of log-probs).

    A hypothesis that emits EOS is finished; the search stops when beam_width hypotheses are finished or
    after max_new_tokens.  Returns the n-best list [(tokens, score, log_prob)], best first, where
    score = log_prob / lp(len) with the length penalty ``alpha``.  One prompt (batch of 1) per call."""
    if isinstance(beam_width, bool) or not isinstance(beam_width, (int, np.integer)) or beam_width < 1:
        raise ValueError(f"beam_width must be a positive integer, got {beam_width!r}")
    if session.next_logits.shape[0] != 1:
        raise ValueError(f"beam_search takes one prompt, got a batch of {session.next_logits.shape[0]}")
    _check_run(session, max_new_tokens, eos_id)
    W = beam_width
    session.select(np.zeros(W, np.int64))
    scores = np.full(W, -np.inf)
    scores[0] = 0.0  # one live beam to start with: the W copies would otherwise propose the same tokens
    seqs = [[] for _ in range(W)]
    finished = []
    for step in range(max_new_tokens):
        cand = scores[:, None] + log_softmax(np.asarray(session.next_logits, np.float64))  # (W, V)
        order = np.argsort(-cand, axis=None, kind="stable")[: 2 * W]
        rows, toks, new_scores, new_seqs = [], [], [], []
        for flat in order:
            b, v = divmod(int(flat), cand.shape[1])
            if not np.isfinite(cand[b, v]):
                break
            if eos_id is not None and v == eos_id:
                finished.append((seqs[b] + [v], float(cand[b, v])))
            else:
                rows.append(b), toks.append(v), new_scores.append(cand[b, v]), new_seqs.append(seqs[b] + [v])
            if len(rows) == W:
                break
        if on_step is not None:
            on_step(step, [list(s) for s in new_seqs], list(new_scores), list(rows))
        if len(finished) >= W or not rows or step == max_new_tokens - 1:
            break
        while len(rows) < W:  # fewer live candidates than beams: pad with dead copies
            rows.append(rows[0]), toks.append(toks[0]), new_scores.append(-np.inf), new_seqs.append(new_seqs[0])
        session.select(np.array(rows))
        session.append(np.array(toks))
        scores, seqs = np.array(new_scores), new_seqs
    if len(finished) < W:  # out of steps: unfinished hypotheses compete too
        finished += [(s, float(sc)) for s, sc in zip(new_seqs, new_scores) if np.isfinite(sc)]
    ranked = sorted(((s, lp / length_penalty(len(s), alpha), lp) for s, lp in finished), key=lambda h: -h[1])
    return ranked[:W]


# --- command line ----------------------------------------------------------------------------------
def run_cli(args, print_fn=print):
    """``python -m transformer_np generate``: decode each prompt and print the new token ids."""
    import time

    from .config import TransformerConfig
    from .model import DecoderLM, load_model

    tokenizer = None
    if getattr(args, "task", None):
        from .model import Transformer
        from .train import load_trained

        task, params, _, _ = load_trained(args.task)
        if task.kind != "seq2seq":
            raise ValueError(f"task {args.task!r} is a classifier, not a generator (try reverse or dates)")
        model, tokenizer = Transformer.from_config(task.config, params), task.tokenizer
        args.eos = 2 if args.eos is None else args.eos
        args.max_new_tokens = max(args.max_new_tokens, 20)
    elif args.checkpoint:
        model = load_model(args.checkpoint)
    else:
        model = DecoderLM(TransformerConfig.lm_tiny(), seed=args.seed)
        print_fn(f"no --checkpoint: a random {model} (seed {args.seed})")
    prompts = []
    for i, text in enumerate(args.prompt):
        if tokenizer is not None:
            prompts.append(tokenizer.encode(text))
            continue
        try:
            prompts.append([int(t) for t in text.replace(",", " ").split()])
        except ValueError:
            raise ValueError(f"--prompt {i + 1} must be token ids separated by spaces, got {text!r}") from None
    show = (lambda ids: repr(tokenizer.decode(ids))) if tokenizer is not None else str
    sampling = any(v is not None for v in (args.temperature, args.top_k, args.top_p))
    if args.beam is not None and sampling:
        raise ValueError("--beam and sampling options (--temperature/--top-k/--top-p) exclude each other")

    def new_session(batch):
        if model.config.architecture == "decoder-only":
            return LMSession(model, batch, use_cache=not args.no_cache)
        return Seq2SeqSession(model, batch, bos_id=args.bos, use_cache=not args.no_cache)

    t0 = time.perf_counter()
    if args.beam is not None:
        for prompt in prompts:
            hyps = beam_search(new_session([prompt]), args.beam, args.max_new_tokens, args.eos, args.alpha)
            print_fn(f"prompt {show(prompt)}: {len(hyps)}-best")
            for tokens, score, logp in hyps:
                print_fn(f"  score {score:9.4f}  log p {logp:9.4f}  {show(tokens)}")
        n = args.max_new_tokens * len(prompts)
    else:
        session = new_session(prompts)
        if sampling:
            out = sample(session, args.max_new_tokens, rng=np.random.default_rng(args.seed),
                         temperature=args.temperature if args.temperature is not None else 1.0,
                         top_k=args.top_k, top_p=args.top_p, eos_id=args.eos)
        else:
            out = greedy(session, args.max_new_tokens, eos_id=args.eos)
        for prompt, tokens in zip(prompts, out):
            print_fn(f"prompt {show(prompt)} -> {show(tokens)}")
        n = sum(len(t) for t in out)
        print_fn(f"KV cache: {session.cache_bytes():,} bytes" if not args.no_cache else "KV cache: off")
    dt = time.perf_counter() - t0
    print_fn(f"{n} tokens in {dt:.3f} s ({n / dt:.1f} tokens/s)")
    return 0
