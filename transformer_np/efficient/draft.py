r"""A draft head for speculative decoding, distilled from the target model (EAGLE, Li et al. 2024).

A Llama-family target reads its logits out of one hidden state, f_t (the last block's output after the final
norm: logits_t = f_t W_out).  The head is a small network that predicts the *next* such state from the current
one and the token just chosen, and reads its guess out through the target's own output layer:

    z_t      = [E[x_{t+1}], f_t] W_fc + b_fc            2C → C: the token chosen from f_t, and f_t itself
    f̂_{t+1}  = Block(z_0 … z_t)_t                        one Llama block (RMSNorm, RoPE attention, SwiGLU), causal
    q(x_{t+2}) = softmax(f̂_{t+1} W_out[:, S])           the target's output layer, on its vocabulary rows S

S is the K tokens most frequent in the training text: the readout's C·K multiply-adds are the largest part of a
draft step otherwise (C·V = 28 M for SmolLM2 against the block's 4 M).  To draft γ tokens the head feeds each
predicted f̂ back in as the next step's feature; the target verifies all γ in one pass
(:func:`~transformer_np.efficient.speculative.speculative_generate`), and its true features then replace the
guesses in the head's KV cache.  Every weight but the head's own (E, W_out) is the target's, shared, not copied.

**Distillation**: the target (teacher) runs once over a training text and its features are kept; the head
(student) is trained, with the target's features as its inputs, to minimise

    L = KL(p_{t+1} ‖ q_{t+1}) + λ · mean_c SmoothL1(f̂_{t+1} − f_{t+1}),    p = softmax(f W_out[:, S])

— the teacher's next-token distribution (not just its argmax) and its next feature (EAGLE's regression term,
which keeps the fed-back guesses usable for the later draft steps).  Each forward below has its backward beside it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path

import numpy as np

from ..core.attention import merge_heads, scaled_dot_product_attention_backward, split_heads
from ..core.blockwise import attention as attend
from ..core.checks import check_positive_int, check_real
from ..core.embeddings import rope, rope_backward, token_embedding
from ..core.masks import causal_mask
from ..core.nn import (
    linear,
    linear_backward,
    log_softmax,
    residual,
    rms_norm_backward,
    rms_norm_forward,
    swiglu_backward,
    swiglu_forward,
)
from ..core.tree import count_params, flatten, unflatten
from ..core.weights import StoredWeight
from ..decoding.cache import new_cache
from ..model.checkpoint import atomic_write, open_npz, read_npz_member
from ..model.protocol import FeatureLM
from ..training.optim import adam_init, adam_step, clip_by_global_norm
from .speculative import Draft


@dataclasses.dataclass(frozen=True)
class HeadConfig:
    """The draft head's shape: one Llama block at the target's width (EAGLE's choice), and its vocabulary rows."""

    d_model: int = 576  # C, the target's hidden size
    n_heads: int = 9  # H query heads of the head's block
    n_kv_heads: int = 3  # H_kv key/value heads
    d_ff: int = 1536  # F, the block's SwiGLU width
    rows: int = 8192  # K, vocabulary rows read out (the most frequent training tokens)
    rope_base: float = 100000.0  # RoPE's base, over the head's own positions
    norm_eps: float = 1e-5  # RMSNorm's ε

    def __post_init__(self):
        for name in ("d_model", "n_heads", "n_kv_heads", "d_ff", "rows"):
            check_positive_int(name, getattr(self, name))
        check_real("rope_base", self.rope_base, low=1.0, low_open=True)
        check_real("norm_eps", self.norm_eps, low=0.0, low_open=True)
        if self.d_model % self.n_heads or self.n_heads % self.n_kv_heads or (self.d_model // self.n_heads) % 2:
            raise ValueError(f"d_model={self.d_model} must split into n_heads={self.n_heads} heads of even size, "
                             f"and n_heads into groups of n_kv_heads={self.n_kv_heads}")

    @property
    def d_head(self):
        return self.d_model // self.n_heads

    @classmethod
    def for_target(cls, cfg, rows=8192):
        """The head for a Llama-family target config: its width, heads, SwiGLU width, RoPE base and ε."""
        return cls(cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.d_ff, min(rows, cfg.vocab_size), cfg.rope_base,
                   cfg.norm_eps)


def init_head_params(cfg, seed=0, dtype="float32"):
    """Random head weights: matrices N(0, 1/fan_in), the two projections into the residual stream (W_O, W_down)
    scaled by 1/4 so the block starts near z; norms' γ = 1; b_fc = 0."""
    rng = np.random.default_rng(seed)
    C, F, KV = cfg.d_model, cfg.d_ff, cfg.n_kv_heads * cfg.d_head

    def w(fan_in, fan_out, scale=1.0):
        return (scale * rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)).astype(dtype)

    return {"fc": {"w": w(2 * C, C), "b": np.zeros(C, dtype)},
            "block": {"attn_norm": {"gamma": np.ones(C, dtype)},
                      "attn": {"w_q": w(C, C), "w_k": w(C, KV), "w_v": w(C, KV), "w_o": w(C, C, 0.25)},
                      "ffn_norm": {"gamma": np.ones(C, dtype)},
                      "ffn": {"w_gate": w(C, F), "w_up": w(C, F), "w_down": w(F, C, 0.25)}}}


# --- the head's block: a Llama block with its backward --------------------------------------------------------
def head_block_forward(x, p, cfg, positions, cache=None):
    r"""x -> x + Attn(RMSNorm(x)) -> · + SwiGLU(RMSNorm(·)), causal over x's T positions (after the cache's, if
    one is given: inference).  x: (B, T, C); positions: (T,).  Returns (y (B, T, C), backward cache)."""
    h, n1 = rms_norm_forward(x, **p["attn_norm"], eps=cfg.norm_eps)
    a = p["attn"]
    q = rope(split_heads(linear(h, a["w_q"]), cfg.n_heads), positions, cfg.rope_base)  # (B, H, T, D)
    k = rope(split_heads(linear(h, a["w_k"]), cfg.n_kv_heads), positions, cfg.rope_base)  # (B, H_kv, T, D)
    v = split_heads(linear(h, a["w_v"]), cfg.n_kv_heads)
    past = 0 if cache is None else cache.length
    mask = causal_mask(x.shape[1], past + x.shape[1]) if x.shape[1] > 1 else None
    if cache is None:
        out, weights = attend(q, k, v, mask, "plain")
    else:
        out, weights = cache.attend(q, k, v, mask, "plain")
    o = merge_heads(out)  # (B, T, C)
    x2 = residual(x, linear(o, a["w_o"]))
    h2, n2 = rms_norm_forward(x2, **p["ffn_norm"], eps=cfg.norm_eps)
    f, ff = swiglu_forward(h2, **p["ffn"])
    return residual(x2, f), (h, n1, q, k, v, weights, o, n2, ff, positions)


def head_block_backward(dy, cache, p, cfg):
    """The forward's lines in reverse.  Returns (dx, grads shaped like p)."""
    h, n1, q, k, v, weights, o, n2, ff, positions = cache
    a = p["attn"]
    dh2, g_ffn = swiglu_backward(dy, ff, **p["ffn"])  # forward: y = x2 + SwiGLU(h2)
    dx2_n, g_n2 = rms_norm_backward(dh2, n2)  # forward: h2 = RMSNorm(x2)
    dx2 = dy + dx2_n  # x2 fed the residual and the norm
    do, dw_o, _ = linear_backward(dx2, o, a["w_o"], has_bias=False)  # forward: x2 = x + o W_O
    dq, dk, dv = scaled_dot_product_attention_backward(split_heads(do, cfg.n_heads), q, k, v, weights)
    dq = rope_backward(dq, positions, cfg.rope_base)  # forward: q = RoPE(h W_Q)
    dk = rope_backward(dk, positions, cfg.rope_base)
    dh_q, dw_q, _ = linear_backward(merge_heads(dq), h, a["w_q"], has_bias=False)
    dh_k, dw_k, _ = linear_backward(merge_heads(dk), h, a["w_k"], has_bias=False)
    dh_v, dw_v, _ = linear_backward(merge_heads(dv), h, a["w_v"], has_bias=False)
    dx_n, g_n1 = rms_norm_backward(dh_q + dh_k + dh_v, n1)  # h gave q, k and v
    grads = {"attn_norm": {"gamma": g_n1}, "attn": {"w_q": dw_q, "w_k": dw_k, "w_v": dw_v, "w_o": dw_o},
             "ffn_norm": {"gamma": g_n2}, "ffn": g_ffn}
    return dx2 + dx_n, grads  # x fed the residual and the norm


def head_forward(features, embedded, p, cfg, positions, cache=None):
    r"""f̂_{t+1} = Block([E[x_{t+1}], f_t] W_fc + b_fc).  features: f_t (B, T, C); embedded: E[x_{t+1}] (B, T, C);
    positions: (T,).  Returns (f̂ (B, T, C), backward cache)."""
    pairs = np.concatenate([embedded, features], axis=-1)  # (B, T, 2C)
    z = linear(pairs, **p["fc"])
    y, block = head_block_forward(z, p["block"], cfg, positions, cache)
    return y, (pairs, block)


def head_backward(dy, cache, p, cfg):
    """Returns grads shaped like p (the inputs are the target's, not trained)."""
    pairs, block = cache
    dz, g_block = head_block_backward(dy, block, p["block"], cfg)
    _, dw, db = linear_backward(dz, pairs, p["fc"]["w"])  # forward: z = [e, f] W_fc + b_fc
    return {"fc": {"w": dw, "b": db}, "block": g_block}


def smooth_l1(d):
    r"""SmoothL1(d) = d²/2 where |d| < 1, else |d| − 1/2 (elementwise); its derivative is clip(d, −1, 1)."""
    a = np.abs(d)
    return np.where(a < 1.0, 0.5 * d * d, a - 0.5)


def distill_loss(p, cfg, features, embedded, w_rows, reg_weight=1.0, noise=None):
    r"""L = mean_t KL(p_{t+1} ‖ q_{t+1}) + λ mean_{t,c} SmoothL1(f̂_{t+1} − f_{t+1}), with its gradients.

    features: the teacher's f (B, T, C) at positions 0 … T−1 of a text; embedded: E[x] (B, T, C) of its tokens;
    w_rows: W_out[:, S] (C, K).  The head reads (f_t, E[x_{t+1}]) for t < T−1 and predicts f_{t+1}; the teacher's
    p = softmax(f_{t+1} W_out[:, S]) and the student's q = softmax(f̂_{t+1} W_out[:, S]).  noise: an array of f's
    shape added to the head's input features only (EAGLE's training noise: drafting later reads its own, inexact,
    guesses), or None.
    Returns (loss, grads shaped like p, {"kl", "reg", "top1"}) — top1: how often q's and p's argmax agree."""
    f_in, target = features[:, :-1], features[:, 1:]
    if noise is not None:
        f_in = f_in + noise[:, :-1]
    T = f_in.shape[1]
    pred, cache = head_forward(f_in, embedded[:, 1:], p, cfg, np.arange(T))
    log_q = log_softmax(linear(pred, w_rows))  # (B, T-1, K)
    log_p = log_softmax(linear(target, w_rows))
    p_t = np.exp(log_p)
    n = log_q.shape[0] * log_q.shape[1]
    kl = float(np.sum(p_t * (log_p - log_q))) / n
    diff = pred - target
    reg = float(np.sum(smooth_l1(diff))) / diff.size
    dlogits = (np.exp(log_q) - p_t) / n  # d KL / d logits_q
    dpred = linear(dlogits, w_rows.T) + reg_weight * np.clip(diff, -1.0, 1.0) / diff.size
    top1 = float(np.mean(np.argmax(log_q, -1) == np.argmax(log_p, -1)))
    return kl + reg_weight * reg, head_backward(dpred, cache, p, cfg), {"kl": kl, "reg": reg, "top1": top1}


# --- the trained head, its file, and drafting with it ------------------------------------------------------------
@dataclasses.dataclass
class DraftHead:
    """A trained head: its weights (params tree), shape (HeadConfig), vocabulary rows S (K target token ids, most
    frequent first) and ``info`` (how it was trained and what it measured, kept in its file)."""

    params: dict
    config: HeadConfig
    rows: np.ndarray
    info: dict = dataclasses.field(default_factory=dict)

    def __repr__(self):
        c = self.config
        return (f"DraftHead(C={c.d_model}, H={c.n_heads}, H_kv={c.n_kv_heads}, F={c.d_ff}, K={c.rows} rows, "
                f"params={count_params(self.params):,})")

    def save(self, path, dtype="float16"):
        """One .npz, written atomically: the weights in ``dtype`` (float16 halves the file), the rows, and a JSON
        header with the config, the training info and a SHA-256 of the arrays (checked by :meth:`load`)."""
        arrays = {k: np.asarray(v, dtype) for k, v in flatten(self.params).items()}
        arrays[ROWS] = np.asarray(self.rows, np.int32)
        header = {"config": dataclasses.asdict(self.config), "info": self.info, "sha256": _digest(arrays)}
        arrays[HEADER] = np.array(json.dumps(header))
        atomic_write(path, lambda f: np.savez(f, **arrays))

    @classmethod
    def load(cls, path):
        """A head saved by :meth:`save`: every member's name and shape is checked against its config, and the
        arrays against the header's SHA-256, before the weights are used (as float32)."""
        zf, members = open_npz(path)
        with zf:
            if HEADER not in members or members[HEADER][0] != () or members[HEADER][1].kind != "U":
                raise ValueError(f"{path}: no draft-head header ({HEADER!r}); not a file written by DraftHead.save")
            header = json.loads(str(read_npz_member(zf, members, HEADER)))
            cfg = HeadConfig(**header["config"])
            template = init_head_params(cfg)  # the tree's paths and shapes
            expected = {k: v.shape for k, v in flatten(template).items()} | {ROWS: (cfg.rows,)}
            got = set(members) - {HEADER}
            if got != set(expected):
                raise ValueError(f"{path}: members do not match the config: missing {sorted(set(expected) - got)[:5]}, "
                                 f"unexpected {sorted(got - set(expected))[:5]}")
            for k, shape in expected.items():
                if members[k][0] != shape or members[k][1].kind not in ("f" if k != ROWS else "i"):
                    raise ValueError(f"{path}: {k} is {members[k][1]} {members[k][0]}, the config implies {shape}")
            arrays = {k: read_npz_member(zf, members, k) for k in expected}
        if _digest(arrays) != header["sha256"]:
            raise ValueError(f"{path}: the arrays' SHA-256 differs from the header's: the file is damaged")
        params = unflatten({k: v.astype(np.float32) for k, v in arrays.items() if k != ROWS}, template)
        return cls(params, cfg, arrays[ROWS].astype(np.int64), header["info"])


HEADER, ROWS = "__header__", "__rows__"
SHIPPED = Path(__file__).parent / "data" / "draft_head_smollm2.npz"
"""The head trained for SmolLM2-135M-Instruct that ships with the package (``python -m transformer_np distill-draft``
re-trains it)."""


def load_shipped_head(path=None):
    """The shipped head for SmolLM2 (or the head at ``path``)."""
    path = SHIPPED if path is None else Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no draft head; train one with: python -m transformer_np distill-draft "
                                f"--out {path}")
    return DraftHead.load(path)


def _digest(arrays):
    """SHA-256 over the arrays' names, dtypes, shapes and bytes, in name order."""
    h = hashlib.sha256()
    for k in sorted(a for a in arrays if a != HEADER):
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def readout_rows(model, rows):
    """W_out[:, rows] (C, K) float32 of a FeatureLM: the head's readout, dequantized once when stored (a GGUF
    table: only those rows)."""
    w = model.output_weight()
    if isinstance(w, StoredWeight):
        w = w.dequantize_stored(np.asarray(rows)).T if w.transposed else w.dequantize()[:, rows]
        return np.ascontiguousarray(w, np.float32)
    return np.ascontiguousarray(np.asarray(w)[:, rows], np.float32)


def embed(model, ids):
    """E[ids] (…, C) float32 of the model's token table (stored tables look up only those rows)."""
    return np.asarray(token_embedding(np.asarray(ids, np.int64), model.params["embed"]["table"], scale=False),
                      np.float32)


class HeadDraft(Draft):
    """Drafting with a :class:`DraftHead` for a :class:`~transformer_np.model.protocol.FeatureLM` target.

    The head's KV cache holds one entry per position t whose true feature f_t the target has given (with the
    token x_{t+1} after it); a proposal first feeds the pairs the target verified since the last one, then feeds
    back its own guesses f̂ for γ − 1 more steps.  Those guesses are forgotten at the next proposal (the cache is
    cut back to the true pairs), as the target's own rollback forgets rejected drafts."""

    needs_features = True

    def __init__(self, head, target):
        if not isinstance(target, FeatureLM):
            raise TypeError(f"target must be a FeatureLM (a Llama-family model), got {type(target).__name__}")
        C, V = target.config.d_model, target.config.vocab_size
        if head.config.d_model != C:
            raise ValueError(f"the head is {head.config.d_model} wide, the target's features are {C}")
        if head.rows.min() < 0 or head.rows.max() >= V:
            raise ValueError(f"the head's vocabulary rows must be target token ids in [0, {V}), got "
                             f"[{head.rows.min()}, {head.rows.max()}]")
        self.head, self.vocab_size, self.target = head, V, target
        self.w_rows = readout_rows(target, head.rows)  # (C, K)
        self.cache = new_cache(1)[0]
        self.features = np.zeros((0, C), np.float32)  # the target's f_t for every position it has verified
        self.fed = 0  # true pairs in the head's cache

    def _step(self, features, tokens, start):
        """f̂ after feeding (f_t, E[x_{t+1}]) for t = start …: the last row, (C,)."""
        emb = embed(self.target, [tokens])
        f, _ = head_forward(features[None], emb, self.head.params, self.head.config,
                            np.arange(start, start + len(tokens)), self.cache)
        return f[0, -1]

    def _catch_up(self, tokens):
        """Feed the true pairs the target verified since the last proposal; returns f̂ after them, or None before
        the target's first pass."""
        n = len(self.features)
        if n == 0:  # the prompt's first pass: no feature yet
            return None
        if len(tokens) != n + 1:
            raise ValueError(f"the target's features cover {n} positions, so tokens must hold {n + 1}, "
                             f"got {len(tokens)}")
        self.cache.truncate(self.fed)
        f = self._step(self.features[self.fed:], tokens[self.fed + 1:], self.fed)
        self.fed = n
        return f

    def propose(self, tokens, gamma, choose):
        f = self._catch_up(tokens)
        if f is None:
            return [], np.zeros((0, self.vocab_size))
        n = self.fed
        drafts, qs = [], np.zeros((gamma, self.vocab_size))
        for i in range(gamma):
            q = choose.probs(linear(f, self.w_rows)[None].astype(np.float64))[0]  # (K,): the draft over S
            d = int(self.head.rows[choose.pick(q)])
            drafts.append(d)
            qs[i, self.head.rows] = q  # 0 outside S: the head never proposes those
            if i < gamma - 1:
                f = self._step(f[None], [d], n + i)
        return drafts, qs

    def propose_tree(self, tokens, branches, depth):
        """(node tokens, parents): the head's ``branches`` most likely next tokens, each continued greedily to
        ``depth`` tokens — a tree of chains sharing the root, flattened branch by branch (parents[i] = −1 for a first
        token, else the node before it).  Greedy only."""
        f0 = self._catch_up(tokens)
        if f0 is None:
            return [], []
        n = self.fed
        firsts = np.argsort(-linear(f0, self.w_rows), kind="stable")[:branches]
        nodes, parents = [], []
        for j in firsts:
            self.cache.truncate(n)
            d, f = int(self.head.rows[j]), f0
            for i in range(depth):
                parents.append(-1 if i == 0 else len(nodes) - 1)
                nodes.append(d)
                if i < depth - 1:
                    f = self._step(f[None], [d], n + i)
                    d = int(self.head.rows[np.argmax(linear(f, self.w_rows))])
        return nodes, parents

    def accept(self, length, features=None):
        self.features = np.concatenate([self.features, features])
        if len(self.features) != length:
            raise ValueError(f"features for {len(self.features)} positions, the target has seen {length}")


# --- distillation -------------------------------------------------------------------------------------------------
CHATS = Path(__file__).parent / "data" / "draft_chats.json"
DOCSTRINGS = Path(__file__).parent / "data" / "calibration_text.txt"


def training_sequences(model, max_tokens=256, chats=CHATS, docstrings=DOCSTRINGS):
    """The head's training texts as token sequences of at most max_tokens: each chat of ``chats`` (SmolLM2's own
    answers to TRAIN_PROMPTS, scripts/make_draft_chats.py) rendered with the model's chat template and ended with
    its end-of-turn token, then the standard-library docstrings of ``docstrings`` cut into pieces.  Never the
    evaluation prompts."""
    check_positive_int("max_tokens", max_tokens)
    data = json.loads(Path(chats).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("chats"), list):
        raise ValueError(f"{chats}: expected {{'chats': [{{'prompt': …, 'answer': …}}, …]}}")
    sequences = []
    for chat in data["chats"]:
        if not (isinstance(chat, dict) and isinstance(chat.get("prompt"), str) and isinstance(chat.get("answer"), str)):
            raise ValueError(f"{chats}: each chat must have a 'prompt' and an 'answer' string, got {chat!r:.80}")
        if chat["prompt"] in EVAL_PROMPTS:
            raise ValueError(f"{chats}: holds the evaluation prompt {chat['prompt']!r}")
        ids = model.chat_ids([{"role": "user", "content": chat["prompt"]}]) + model.tokenize(chat["answer"])
        sequences.append((ids + [model.eos_id])[:max_tokens])
    text = model.tokenize(Path(docstrings).read_text(encoding="utf-8"))
    sequences += [text[i:i + max_tokens] for i in range(0, len(text), max_tokens)]
    return [s for s in sequences if len(s) >= 2]


def teacher_features(target, sequences):
    """The target's features f (T, C) float32 over each token sequence (one forward each): the teacher's side."""
    return [np.asarray(target.features(np.asarray(ids, np.int64)[None])[0], np.float32) for ids in sequences]


def frequent_rows(sequences, vocab_size, k):
    """The k token ids most frequent in the sequences (ties: the smaller id), most frequent first."""
    counts = np.bincount(np.concatenate([np.asarray(s, np.int64) for s in sequences]), minlength=vocab_size)
    return np.argsort(-counts, kind="stable")[:k]


def distill(target, sequences, features=None, cfg=None, *, steps=1000, lr=1e-3, warmup=50, reg_weight=1.0,
            noise=0.0, max_grad_norm=1.0, seed=0, on_step=None):
    r"""Train a head for ``target`` on token sequences (lists of ids, one text each): Adam on
    :func:`distill_loss`, one sequence a step (shuffled, epoch after epoch), learning rate warmed up linearly over
    ``warmup`` steps then decayed to 10% by a cosine.  features: :func:`teacher_features` of the sequences if
    already computed; noise: the half-width of the uniform noise added to the head's input features (0: none).
    on_step(step, loss, parts) after each step.  Returns (DraftHead, history {"loss", "kl",
    "reg", "top1"} per step)."""
    cfg = cfg or HeadConfig.for_target(target.config)
    check_positive_int("steps", steps)
    sequences = [list(s) for s in sequences]
    features = teacher_features(target, sequences) if features is None else list(features)
    if len(features) != len(sequences) or any(len(f) != len(s) for f, s in zip(features, sequences)):
        raise ValueError("features must hold one (T, C) array per sequence, T its length")
    keep = [i for i, s in enumerate(sequences) if len(s) >= 2]  # a text of one token has no pair to learn from
    if not keep:
        raise ValueError("sequences must hold at least one sequence of 2 or more tokens")
    sequences, features = [sequences[i] for i in keep], [features[i] for i in keep]
    rows = frequent_rows(sequences, target.config.vocab_size, cfg.rows)
    w_rows = readout_rows(target, rows)
    rng = np.random.default_rng(seed)
    params = init_head_params(cfg, seed)
    opt = adam_init(params)
    history = {"loss": [], "kl": [], "reg": [], "top1": []}
    order = []
    for step in range(steps):
        if not order:
            order = list(rng.permutation(len(sequences)))
        i = order.pop()
        emb = embed(target, [sequences[i]])
        shake = rng.uniform(-noise, noise, (1, *features[i].shape)).astype(np.float32) if noise else None
        loss, grads, parts = distill_loss(params, cfg, features[i][None], emb, w_rows, reg_weight, shake)
        grads, _ = clip_by_global_norm(grads, max_grad_norm)
        frac = step / max(1, steps - 1)
        rate = lr * min(1.0, (step + 1) / warmup) * (0.1 + 0.45 * (1 + math.cos(math.pi * frac)))
        params, opt = adam_step(params, grads, opt, rate, beta2=0.999, eps=1e-8)
        for k, v in (("loss", loss), *parts.items()):
            history[k].append(v)
        if on_step is not None:
            on_step(step, loss, parts)
    every = max(1, steps // 30)  # the training curve kept in the head's file: means over 30 stretches of steps
    curve = {k: [round(float(np.mean(v[i:i + every])), 4) for i in range(0, steps, every)] for k, v in history.items()}
    info = {"steps": steps, "lr": lr, "warmup": warmup, "reg_weight": reg_weight, "noise": noise, "seed": seed,
            "sequences": len(sequences), "tokens": int(sum(len(s) for s in sequences)),
            "curve": {"step": list(range(every, steps + every, every))[:len(curve["loss"])], **curve}}
    return DraftHead(params, cfg, rows, info), history


_TOPICS = [
    "photosynthesis", "the water cycle", "binary search", "recursion in programming", "the French Revolution",
    "black holes", "how vaccines work", "compound interest", "the Pythagorean theorem", "machine learning",
    "the human heart", "volcanoes", "the stock market", "DNA", "electric cars", "the Roman Empire", "gravity",
    "a healthy breakfast", "time management", "learning a new language", "the internet", "sorting algorithms",
    "prime numbers", "the moon", "rainbows", "honey bees", "coffee", "chess", "the piano", "the Great Wall of China",
    "earthquakes", "solar panels", "sleep", "running", "saving money", "writing a resume", "public speaking",
    "the immune system", "magnets", "the printing press", "democracy", "recycling", "the oceans", "dinosaurs",
    "the speed of light", "Python lists", "SQL databases", "version control with git", "HTTP", "encryption",
    "operating systems", "the Olympic Games", "green tea", "baking bread", "gardening", "friendship", "cats",
    "mountains", "the Renaissance", "electricity", "neural networks", "the periodic table", "Mars", "libraries",
    "jazz music", "the Amazon rainforest", "antibiotics", "cloud computing", "fractions", "the Eiffel Tower",
]
_TOPICS_2 = [
    "the solar system's moons", "ancient Egypt", "the Industrial Revolution", "the human brain", "tornadoes",
    "wind turbines", "nuclear energy", "the water in our bodies", "octopuses", "whales", "penguins", "trees",
    "coral reefs", "deserts", "glaciers", "the Silk Road", "the Moon landing", "Shakespeare", "the violin",
    "painting with watercolors", "photography", "yoga", "meditation", "nutrition", "vitamins", "the common cold",
    "blood types", "bones", "muscles", "the eye", "sound waves", "light bulbs", "batteries", "rockets", "satellites",
    "GPS", "smartphones", "video games", "social media", "email", "spreadsheets", "databases", "compilers",
    "linked lists", "hash functions", "graph algorithms", "dynamic programming", "unit testing", "JSON",
    "regular expressions", "the Linux command line", "open-source software", "budgeting", "investing",
    "negotiation", "team leadership", "job interviews", "writing an essay", "reading more books",
    "learning to swim",
]
_TEMPLATES = ["Explain {} in simple terms.", "Give me three interesting facts about {}.",
              "Write a short paragraph about {}.", "What should a beginner know about {}?"]
_TEMPLATES_2 = ["Why is {} important?", "Write a short story that involves {}."]
_TASKS = [
    "Write a Python function that returns the largest number in a list.",
    "Write a Python function that counts the vowels in a string.",
    "Write a Python function that reverses a list without using reverse().",
    "Write a Python class for a bank account with deposit and withdraw methods.",
    "How do I read a text file line by line in Python?",
    "What is the difference between a list and a tuple in Python?",
    "Write a JavaScript function that doubles every number in an array.",
    "Explain what a for loop does, with an example.",
    "What is 15 percent of 80? Show your work.",
    "Solve for x: 3x + 7 = 22.",
    "What is the area of a circle with radius 5?",
    "Convert 100 degrees Fahrenheit to Celsius.",
    "Give me a short workout plan for a busy week.",
    "Write a thank-you note to a teacher.",
    "Write a short story about a robot who learns to paint.",
    "Write a limerick about a sleepy cat.",
    "Suggest a name for a bakery and explain why.",
    "List five tips for studying for an exam.",
    "How do I make a cup of tea?",
    "What are the primary colors?",
    "Describe a sunset over the sea.",
    "What is the capital of Japan, and what is it known for?",
    "How many continents are there? Name them.",
    "Rewrite this sentence to be more formal: hey, can u send me the file asap?",
    "Summarize the benefits of drinking water.",
    "What is the difference between a noun and a verb?",
    "Give me three ideas for a birthday party.",
    "How do plants know which way is up?",
    "What does a software engineer do all day?",
    "Explain the rules of soccer briefly.",
    "What is a good way to start a conversation with a stranger?",
    "Write a tweet announcing a new coffee shop.",
    "How does a bicycle work?",
    "Why do leaves change color in the fall?",
    "What is the tallest mountain in the world?",
    "Write a product description for a water bottle.",
    "Plan a one-day trip to a city you like.",
    "What are the parts of a computer?",
    "Explain what an API is to a child.",
    "Give me a simple recipe for tomato soup.",
]
TRAIN_PROMPTS = ([t.format(topic) for topic in _TOPICS for t in _TEMPLATES] + _TASKS
                 + [t.format(topic) for topic in _TOPICS_2 for t in _TEMPLATES + _TEMPLATES_2]
                 + [t.format(topic) for topic in _TOPICS for t in _TEMPLATES_2])
"""The prompts whose answers (SmolLM2's own, scripts/make_draft_chats.py) the head is trained on."""

EVAL_PROMPTS = [
    "List the planets of the solar system in order.",
    "Write a Python function that adds two numbers.",
    "What causes the seasons on Earth?",
    "Write a Python function that checks whether a string is a palindrome.",
    "Give me a recipe for pancakes.",
    "Summarize the plot of Romeo and Juliet.",
    "How do airplanes stay in the air?",
    "What is the difference between a virus and a bacterium?",
    "Suggest five names for a pet goldfish.",
    "Explain what a hash table is.",
    "Write a haiku about autumn.",
    "How can I improve my handwriting?",
    "What is inflation?",
    "Describe the life cycle of a butterfly.",
    "Translate 'good morning' into French, Spanish and German.",
    "Why is the sky blue?",
    "Write an email asking my manager for a day off.",
    "What are the rules of tic-tac-toe?",
    "How does a refrigerator keep food cold?",
    "Explain the difference between weather and climate.",
]
"""Chat prompts the head never sees in training: the benchmark's and the exactness test's."""
