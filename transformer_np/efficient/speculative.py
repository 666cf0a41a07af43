r"""Speculative decoding (Leviathan et al. 2023; Chen et al. 2023): a cheap draft proposes γ tokens, the target
model scores all of them in **one** forward pass, and a rule that provably keeps the target's distribution
decides how many to keep.

With draft distributions q_i and target distributions p_i at the γ proposed positions:

* token d_i is accepted with probability min(1, p_i(d_i) / q_i(d_i)), in order, until the first rejection;
* the first rejected position is resampled from norm(max(0, p_i − q_i)) — what p has that q over-proposed;
* if all γ are accepted, one bonus token is drawn from p_{γ+1}, which the same target pass computed.

So each target pass yields between 1 and γ + 1 tokens, distributed exactly as plain sampling from the target.
With greedy decoding the rule becomes "keep drafts while they equal the target's argmax".  Expected tokens per
target pass with acceptance rate α: (1 − α^{γ+1}) / (1 − α); the speed-up over plain decoding when a draft step
costs c target steps: (1 − α^{γ+1}) / ((1 − α)(γc + 1)).

Drafts here (each a :class:`Draft`): the target's own first k blocks with its final norm and output layer
(:func:`early_exit`), prompt lookup (:class:`PromptLookup`: copy what followed the last occurrence of the current
n-gram — no model), and a head distilled from the target (:class:`~transformer_np.efficient.draft.HeadDraft`,
EAGLE), which drafts from the target's last hidden state.  Models keep KV caches, rolled back to the accepted
prefix after each pass.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod

import numpy as np

from ..core.backend import to_numpy
from ..core.checks import check_positive_int
from ..core.nn import linear
from ..decoding.cache import new_cache
from ..decoding.search import check_logits, draw, next_token_probs
from ..model.protocol import FeatureLM


@dataclasses.dataclass
class SpecStats:
    """What a speculative run did: target passes, drafted and accepted tokens, tokens produced."""

    target_calls: int = 0
    drafted: int = 0
    accepted: int = 0
    produced: int = 0
    accepted_per_call: list = dataclasses.field(default_factory=list)  # accepted drafts of each target pass
    drafted_per_call: list = dataclasses.field(default_factory=list)  # drafts each target pass verified

    def acceptance_by_position(self, gamma):
        r"""α_i for i = 1 … γ: of the passes that verified a draft at position i after accepting the i − 1 before
        it, the fraction that accepted it too — measured per position, not assumed equal (None where no pass
        reached i)."""
        acc, dr = np.array(self.accepted_per_call), np.array(self.drafted_per_call)
        out = []
        for i in range(1, gamma + 1):
            reached = (dr >= i) & (acc >= i - 1)
            out.append(float(np.mean(acc[reached] >= i)) if reached.any() else None)
        return out

    def record(self, accepted, drafted):
        """One target pass: it verified ``drafted`` drafts and kept the first ``accepted``."""
        self.target_calls += 1
        self.drafted += drafted
        self.accepted += accepted
        self.accepted_per_call.append(accepted)
        self.drafted_per_call.append(drafted)

    @property
    def acceptance_rate(self):
        return self.accepted / self.drafted if self.drafted else 0.0

    @property
    def tokens_per_call(self):
        return self.produced / self.target_calls if self.target_calls else 0.0


def tokens_per_pass(alphas):
    r"""1 + Σ_{i=1}^{γ} Π_{j≤i} α_j: expected tokens a target pass yields when the draft at position i is accepted
    with probability α_i given the ones before it were (equal α_i = α: (1 − α^{γ+1}) / (1 − α))."""
    return 1.0 + float(np.sum(np.cumprod(alphas)))


def expected_speedup(alpha, gamma, c):
    r"""(1 − α^{γ+1}) / ((1 − α)(γ c + 1)): expected speed-up over plain decoding for acceptance rate α, γ
    drafted tokens per pass and a draft step costing c target steps (Leviathan et al., theorem 3.8)."""
    tokens = gamma + 1 if alpha >= 1 else (1 - alpha ** (gamma + 1)) / (1 - alpha)
    return tokens / (gamma * c + 1)


class _Runner:
    """A model decoding one sequence: its KV cache, fed on demand with the tokens it has not seen."""

    def __init__(self, model):
        self.model = model
        self.cache = new_cache(model.config.n_layers)

    @property
    def seen(self):
        return self.cache[0].length

    def feed(self, tokens, features=False, positions=None, key_mask=None):
        """(logits (len(tokens), V) as float64 NumPy, one row per fed token; with features=True also the target's
        features (len(tokens), C) the logits were read from — a :class:`FeatureLM`'s — else None).  positions,
        key_mask: the model's (a token tree's, :func:`tree_inputs`); by default the next positions, causal."""
        ids = np.asarray(tokens, dtype=np.int64)[None]
        if not features:
            logits = self.model.step(ids, positions, key_mask, cache=self.cache)
            return np.asarray(to_numpy(logits)[0], dtype=np.float64), None
        f = self.model.features(ids, self.cache, positions, key_mask)  # (1, T, C): step's logits are f @ W_out
        logits = linear(f, self.model.output_weight())
        return np.asarray(to_numpy(logits)[0], dtype=np.float64), np.asarray(to_numpy(f)[0], dtype=np.float32)

    def rollback(self, length):
        for layer in self.cache:
            layer.truncate(length)


class Draft(ABC):
    """What speculative_generate asks of a draft.  ``needs_features``: whether :meth:`accept` wants the target's
    features (its last hidden states, :class:`~transformer_np.model.protocol.FeatureLM`)."""

    needs_features = False

    @abstractmethod
    def propose(self, tokens, gamma, choose):
        """(up to γ drafted tokens continuing ``tokens``, their draft distributions q (n, V)); choose.probs(logits)
        and choose.pick(probs) say how a token is chosen (greedy or sampled).  No drafts: ([], (0, V))."""

    @abstractmethod
    def accept(self, length, features=None):
        """The target kept the first ``length`` tokens and has seen them all; ``features`` (with needs_features):
        the target's features (n, C) at the positions it verified since the last call, the last n of those."""


class ModelDraft(Draft):
    """A draft model (e.g. :func:`early_exit`) proposing γ tokens autoregressively, with its own KV cache."""

    def __init__(self, model):
        self.runner = _Runner(model)

    def propose(self, tokens, gamma, choose):
        """(γ drafted tokens, their distributions q (γ, V)), continuing tokens; choose(probs) picks a token."""
        r = self.runner
        logits = r.feed(tokens[r.seen:])[0][-1]
        drafts, qs = [], []
        for i in range(gamma):
            q = choose.probs(logits[None])[0]
            d = choose.pick(q)
            drafts.append(d)
            qs.append(q)
            if i < gamma - 1:
                logits = r.feed([d])[0][-1]
        return drafts, np.stack(qs)

    def accept(self, length, features=None):
        self.runner.rollback(min(length, self.runner.seen))


class PromptLookup(Draft):
    """Prompt-lookup drafting: find the most recent earlier occurrence of the last n tokens (n = max_n … 1)
    and propose the γ tokens that followed it.  No model, no cost; q is one-hot on the proposal."""

    def __init__(self, vocab_size, max_n=3):
        self.vocab_size, self.max_n = vocab_size, max_n

    def propose(self, tokens, gamma, choose):
        drafts = []
        for n in range(min(self.max_n, len(tokens) - 1), 0, -1):
            tail = tokens[-n:]
            for start in range(len(tokens) - n - 1, -1, -1):
                if tokens[start:start + n] == tail:
                    drafts = tokens[start + n: start + n + gamma]
                    break
            if drafts:
                break
        if not drafts:
            return [], np.zeros((0, self.vocab_size))
        q = np.zeros((len(drafts), self.vocab_size))
        q[np.arange(len(drafts)), drafts] = 1.0
        return list(drafts), q

    def accept(self, length, features=None):
        pass


@dataclasses.dataclass
class _Chooser:
    """How a token is chosen from logits: greedy (temperature None) or sampled with a generator."""

    temperature: float | None
    top_k: int | None
    top_p: float | None
    rng: np.random.Generator | None

    @property
    def greedy(self):
        return self.temperature is None

    def probs(self, logits):
        if self.greedy:  # a one-hot distribution on the argmax: the greedy rule falls out of the same algebra
            p = np.zeros_like(logits)
            p[np.arange(len(logits)), np.argmax(logits, axis=-1)] = 1.0
            return p
        return next_token_probs(logits, self.temperature, self.top_k, self.top_p)

    def pick(self, p):
        return int(np.argmax(p)) if self.greedy else int(draw(p[None], self.rng)[0])


def speculative_generate(target, draft, prompt, max_new_tokens, gamma=4, *, temperature=None, top_k=None,
                         top_p=None, rng=None, eos_id=None, on_token=None, until=None):
    """Generate up to max_new_tokens continuing prompt (a list of ids) with the target model, drafted by
    ``draft`` (a :class:`Draft`: :class:`ModelDraft`, :class:`PromptLookup`, or a distilled head's
    :class:`~transformer_np.efficient.draft.HeadDraft`, which needs a :class:`FeatureLM` target).  Greedy by
    default (the output is then exactly plain greedy decoding's); with temperature/top_k/top_p, sampling with a
    np.random.Generator ``rng`` (the output is then distributed exactly as plain sampling's).  on_token(id) is
    called with each token kept, in order, as each target pass decides them (1 … γ + 1 at a time); until() after
    each pass, True ends the generation (a stop string).  Returns (new token ids, SpecStats)."""
    check_positive_int("gamma", gamma)
    check_positive_int("max_new_tokens", max_new_tokens)
    if not isinstance(draft, Draft):
        raise TypeError(f"draft must be a Draft (ModelDraft, PromptLookup, HeadDraft), got {type(draft).__name__}")
    if draft.needs_features and not isinstance(target, FeatureLM):
        raise TypeError(f"{type(draft).__name__} drafts from the target's features: the target must be a FeatureLM "
                        f"(a Llama-family model), got {type(target).__name__}")
    choose = _Chooser(temperature, top_k, top_p, rng)
    if not choose.greedy and not isinstance(rng, np.random.Generator):
        raise TypeError("sampling needs rng=, a numpy.random.Generator")
    tokens = [int(t) for t in prompt]
    start = len(tokens)
    if start + max_new_tokens > target.config.max_len:
        raise ValueError(f"prompt ({start}) + max_new_tokens ({max_new_tokens}) exceed max_len={target.config.max_len}")
    runner, stats, told = _Runner(target), SpecStats(), 0
    while len(tokens) - start < max_new_tokens and not (eos_id is not None and eos_id in tokens[start:]):
        room = max_new_tokens - (len(tokens) - start)
        drafts, qs = draft.propose(tokens, min(gamma, room), choose)
        fed_from = runner.seen
        logits, features = runner.feed(tokens[fed_from:] + drafts, draft.needs_features)
        check_logits(logits, len(tokens) - start)
        ps = choose.probs(logits[-(len(drafts) + 1):])  # (n_drafts + 1, V): p_1 … p_{γ+1}
        n = 0
        new = None
        for i, d in enumerate(drafts):
            p, q = ps[i], qs[i]
            if choose.greedy:
                ok = p[d] == 1.0
            else:
                ok = rng.random() < min(1.0, p[d] / q[d]) if q[d] > 0 else False
            if not ok:
                residual = np.maximum(p - q, 0.0)
                new = choose.pick(residual / residual.sum() if residual.sum() > 0 else p)
                break
            n += 1
        if new is None:  # every draft accepted: the bonus token from p_{γ+1}
            new = choose.pick(ps[n])
        stats.record(n, len(drafts))
        tokens += drafts[:n] + [new]
        runner.rollback(len(tokens) - 1)  # the target has seen everything but the new last token
        draft.accept(len(tokens) - 1, None if features is None else features[: len(tokens) - 1 - fed_from])
        told = _tell(tokens[start:], max_new_tokens, eos_id, on_token, told)
        if until is not None and until():
            break
    out = _kept(tokens[start:], max_new_tokens, eos_id)
    stats.produced = len(out)
    return out, stats


def _tell(new, max_new_tokens, eos_id, on_token, told):
    """Call on_token with the kept tokens not told yet; returns how many are told now."""
    out = _kept(new, max_new_tokens, eos_id)
    if on_token is not None:
        for t in out[told:]:
            on_token(t)
    return len(out)


def _kept(new, max_new_tokens, eos_id):
    """The generated tokens that count: at most max_new_tokens, ending at the first eos_id."""
    out = new[:max_new_tokens]
    return out[: out.index(eos_id) + 1] if eos_id is not None and eos_id in out else out


def early_exit(model, n_layers):
    """A draft that is the model's first n_layers blocks followed by its own final norm and output layer —
    no new weights, just less work (the arrays are shared, not copied)."""
    check_positive_int("n_layers", n_layers)
    if n_layers > model.config.n_layers:
        raise ValueError(f"n_layers must be at most the model's {model.config.n_layers}, got {n_layers}")
    layers = model.params["decoder"]["layers"][:n_layers]
    params = {**model.params, "decoder": {**model.params["decoder"], "layers": layers}}
    return model.with_params(params, model.config.with_layers(n_layers))


# --- token trees: several branches verified in one target pass (Medusa, EAGLE-2) ------------------------------------
def tree_mask(parents):
    r"""M[i, j] = node j is node i or one of its ancestors (parents[i] < i, −1 for a root): the attention mask of a
    token tree flattened in topological order — each node sees its own branch and nothing of its siblings'."""
    M = np.eye(len(parents), dtype=bool)
    for i, p in enumerate(parents):
        if not -1 <= p < i:
            raise ValueError(f"parents[{i}] must be -1 (a root) or an earlier node, got {p}")
        if p >= 0:
            M[i] |= M[p]  # p < i: its row is complete
    return M


def tree_depths(parents):
    """Each node's depth (a root's is 0): its position after the tree's start."""
    depth = []
    for p in parents:
        depth.append(0 if p < 0 else depth[p] + 1)
    return depth


def tree_inputs(parents, past):
    """(positions (1, N), key_mask (1, 1, N, past + N)) for a tree of N nodes fed after ``past`` cached positions:
    every node sees the whole prefix and its own branch, at the position its depth gives."""
    N = len(parents)
    mask = np.ones((1, 1, N, past + N), dtype=bool)
    mask[0, 0, :, past:] = tree_mask(parents)
    return np.asarray([past + d for d in tree_depths(parents)], np.int64)[None], mask


def speculative_tree_generate(target, draft, prompt, max_new_tokens, branches=2, depth=4, *, eos_id=None,
                              on_token=None, until=None):
    """Greedy speculative decoding with a token tree: the draft (a :class:`~transformer_np.efficient.draft.
    HeadDraft`) proposes ``branches`` first tokens, each continued by a chain to ``depth``; the target scores the
    whole tree in one pass under :func:`tree_mask` and keeps the longest branch that agrees with its own argmax,
    then one token of its own; its KV cache keeps only that branch (:meth:`KVCache.keep`).  The output is plain
    greedy decoding's, token for token.  Returns (new token ids, SpecStats)."""
    check_positive_int("branches", branches)
    check_positive_int("depth", depth)
    check_positive_int("max_new_tokens", max_new_tokens)
    if not (isinstance(draft, Draft) and draft.needs_features and isinstance(target, FeatureLM)):
        raise TypeError("tree drafting needs a feature draft (HeadDraft) and a FeatureLM target")
    tokens = [int(t) for t in prompt]
    start = len(tokens)
    if start + max_new_tokens + depth > target.config.max_len:
        raise ValueError(f"prompt ({start}) + max_new_tokens ({max_new_tokens}) + depth ({depth}) exceed "
                         f"max_len={target.config.max_len}")
    runner, stats, told = _Runner(target), SpecStats(), 0
    while len(tokens) - start < max_new_tokens and not (eos_id is not None and eos_id in tokens[start:]):
        fed_from = runner.seen
        nodes, parents = draft.propose_tree(tokens, branches, depth)
        # the fed block: the tokens the target has not seen as a chain (the prompt on the first pass, then the last
        # kept token), its last one the tree's root; node i at index chain + i.  A chain is a tree: one mask for all
        chain = len(tokens) - fed_from
        block = [i - 1 for i in range(chain)] + [chain + p if p >= 0 else chain - 1 for p in parents]
        fed = tokens[fed_from:] + nodes
        logits, f = runner.feed(fed, True, *tree_inputs(block, fed_from))
        check_logits(logits, len(tokens) - start)
        best = np.argmax(logits, axis=-1)  # the target's choice after each block entry
        path, cur = [], chain - 1
        while (child := next((j for j in range(chain, len(fed)) if block[j] == cur and fed[j] == best[cur]),
                             None)) is not None:
            path.append(child)
            cur = child
        stats.record(len(path), len(nodes))
        kept = list(range(chain)) + path  # block entries whose keys stay: the chain and the accepted branch
        runner.cache.keep(list(range(fed_from)) + [fed_from + j for j in kept])
        tokens += [fed[j] for j in path] + [int(best[cur])]
        draft.accept(len(tokens) - 1, f[kept])
        told = _tell(tokens[start:], max_new_tokens, eos_id, on_token, told)
        if until is not None and until():
            break
    out = _kept(tokens[start:], max_new_tokens, eos_id)
    stats.produced = len(out)
    return out, stats
