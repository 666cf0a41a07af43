r"""Search: turning the next-token logits of a session into tokens — greedy, sampled (temperature, top-k,
top-p) and beam search, each stopping rows at EOS.  Works with any session that has ``next_logits`` (B, V),
``append(tokens)``, ``select(rows)`` and ``room()`` (:mod:`~transformer_np.decoding.sessions`).
"""

from __future__ import annotations

import numpy as np

from ..core.checks import check_int, check_positive_int, check_real
from ..core.nn import log_softmax, softmax


def check_sampling(temperature=1.0, top_k=None, top_p=None):
    """The sampling settings: temperature a finite number > 0, top_k a positive integer, top_p in (0, 1]."""
    check_real("temperature", temperature, low=0.0, low_open=True)
    if top_k is not None:
        check_positive_int("top_k", top_k)
    if top_p is not None:
        check_real("top_p", top_p, low=0.0, high=1.0, low_open=True)


def check_logits(logits, step=None):
    """Logits (B, V) a model gave (at decoding step ``step``): NaN or +inf would make every choice silently
    wrong (a NaN row sums to NaN, and argmax or sampling would return token 0 forever), so they are an error.
    -inf is allowed: that token simply has probability 0."""
    bad = np.isnan(logits) | np.isposinf(logits)
    if bad.any():
        rows = sorted({int(r) for r in np.argwhere(bad)[:, 0]})
        where = f" at step {step}" if step is not None else ""
        raise ValueError(f"non-finite logits (NaN or +inf){where} in batch rows {rows[:8]}")
    return logits


def next_token_probs(logits, temperature=1.0, top_k=None, top_p=None):
    r"""p = softmax(logits / T) restricted to the k most likely tokens and then to the smallest set whose
    probability reaches top_p (nucleus), renormalised.  logits: (B, V) -> (B, V) rows summing to 1."""
    check_sampling(temperature, top_k, top_p)
    z = check_logits(np.asarray(logits, np.float64)) / temperature  # (B, V)
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
    check_positive_int("max_new_tokens", max_new_tokens)
    if max_new_tokens > session.room() + 1:
        raise ValueError(f"max_new_tokens={max_new_tokens} does not fit: the context has room for "
                         f"{session.room() + 1} more tokens (max_len={session.cfg.max_len})")
    if eos_id is not None:
        check_int("eos_id", eos_id, low=0, high=session.cfg.vocab_size - 1)


def _run(session, max_new_tokens, eos_id, choose, on_step=None, until=None):
    """The loop shared by greedy and sampling: choose(logits) -> (B,) tokens; rows stop at EOS, and every row
    when until() says so after a step (a stop string the caller found in the text so far)."""
    _check_run(session, max_new_tokens, eos_id)
    B = session.next_logits.shape[0]
    out = [[] for _ in range(B)]
    done = np.zeros(B, bool)
    for step in range(max_new_tokens):
        tokens = choose(check_logits(session.next_logits, step))
        if on_step is not None:
            on_step(step, session, tokens)
        for b in np.flatnonzero(~done):
            out[b].append(int(tokens[b]))
        done |= (tokens == eos_id) if eos_id is not None else False
        if done.all() or step == max_new_tokens - 1 or (until is not None and until()):
            break
        session.append(tokens)  # finished rows keep going in lockstep; what they produce is dropped
    return out


def greedy(session, max_new_tokens, eos_id=None, on_step=None, until=None):
    """Generate the most likely token at every step.  Returns one list of new token ids per row (EOS kept)."""
    return _run(session, max_new_tokens, eos_id, lambda logits: np.argmax(logits, axis=-1), on_step, until)


def sample(session, max_new_tokens, *, rng, temperature=1.0, top_k=None, top_p=None, eos_id=None, on_step=None,
           until=None):
    """Draw each token from next_token_probs(logits, temperature, top_k, top_p), with a np.random.Generator."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    check_sampling(temperature, top_k, top_p)

    def choose(logits):
        return draw(next_token_probs(logits, temperature, top_k, top_p), rng)

    return _run(session, max_new_tokens, eos_id, choose, on_step, until)


def draw(p, rng):
    r"""One token per row from probabilities p (B, V), by the inverse CDF: the first v with
    c_v > u·c_V, where c is the running sum of p and u ~ U[0, 1).  Scaling u by the last sum, not 1, and never
    going past the last token of non-zero probability, a token of probability 0 is never drawn, whatever the
    rounding of the sums."""
    c = np.cumsum(p, axis=-1)  # (B, V)
    u = rng.random((p.shape[0], 1)) * c[:, -1:]  # (B, 1)
    last = p.shape[-1] - 1 - np.argmax(p[:, ::-1] > 0, axis=-1)  # (B,) the last token with p > 0
    return np.minimum((c <= u).sum(axis=-1), last)


def length_penalty(length, alpha):
    r"""lp(Y) = ((5 + |Y|) / 6)^\alpha  (Wu et al. 2016); alpha = 0 ranks by total log-probability."""
    return ((5.0 + length) / 6.0) ** alpha


def beam_search(session, beam_width, max_new_tokens, eos_id=None, alpha=0.0, on_step=None):
    r"""Keep the ``beam_width`` highest-scoring partial sequences at each step (score: sum of log-probs).

    A hypothesis that emits EOS is finished; the search stops when beam_width hypotheses are finished or
    after max_new_tokens.  Returns the n-best list [(tokens, score, log_prob)], best first, where
    score = log_prob / lp(len) with the length penalty ``alpha``.  One prompt (batch of 1) per call."""
    check_positive_int("beam_width", beam_width)
    check_real("alpha", alpha)
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
        cand = scores[:, None] + log_softmax(np.asarray(check_logits(session.next_logits, step), np.float64))
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
