r"""An interactive explorer of attention: any model of this package, one self-contained HTML page.

``explore("dates", "the 3rd of March, 2021")`` (or ``python -m transformer_np explore --model dates --text …
--out page.html``) runs the model in NumPy, keeps every layer's and head's attention weights, and writes a page
that needs nothing else: the weights are embedded (float32, base64) beside a small hand-written script
(``explore.js``) and style sheet, so it opens from disk with no network.  Views:

* **head view** — the query tokens left, the key tokens right, a line from each query to each key with the
  weight as its opacity; choose the attention (encoder self-, decoder masked self-, cross-), the layer and the
  head; hover a token to keep only its lines;
* **model view** — every layer × head as a thumbnail of its weight matrix; click one to open it in the head view;
* **generation view** (``generate=N``: SmolLM2, Gemma 3, or the encoder-decoders ``dates`` and ``reverse``) — N greedy
  steps with the KV cache: each token, the attention of the position that predicted it (an encoder-decoder's
  masked self-attention over its output so far and its cross-attention over the source), the top-k next tokens,
  the cache's size;
* **compare view** (``compare=`` a VARIANTS name, with generate) — a compressed model's next-token distribution
  beside float32's at each step, with the KL divergence.

Gemma 3's layers are named by kind ("0 · sliding W=512", "5 · global"): a sliding layer's weights are zero beyond
its window, in the model view's thumbnails and in the generation view (whose window caches no longer hold those
positions: their weights are drawn as the zeros they are).

Long inputs stay usable: past ``MAX_WEIGHTS`` numbers per page, queries and keys are grouped into blocks of b
tokens (a block's row is the mean of its queries' rows, a block's column the sum of its keys' weights, so rows
still sum to one) and the page says so; the generation view's steps likewise sum their positions in blocks past
``MAX_WEIGHTS`` numbers of their own.  The same input always gives the same bytes.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import importlib.resources
import json
import math

import numpy as np

from ..core.checks import check_choice, check_int
from ..core.nn import softmax
from ..decoding.search import greedy
from ..decoding.sessions import LMSession, Seq2SeqSession
from ..efficient.compress import compress
from ..model.checkpoint import atomic_write
from ..pretrained.registry import load, load_shipped
from ..training.loop import predict
from ..training.tasks import BOS, EOS

MODELS = ("dates", "reverse", "sentiment", "minilm", "smollm2", "gemma3")
LLMS = {"smollm2": "SmolLM2-135M-Instruct", "gemma3": "Gemma 3 270M"}  # the pretrained LLMs, read from their files
MAX_WEIGHTS = 2_000_000  # float32 weights per page (8 MB before base64); beyond it, tokens are grouped in blocks
MAX_LAYER_BYTES = 2**29  # one layer's (H, T, T) float32 weights, formed whole before they are grouped: 512 MiB


@dataclasses.dataclass
class Attention:
    """One kind of attention of a model: weights (L, H, T_q, T_k) float32 and the labels of both sides; block > 1:
    already grouped in blocks of that many tokens (:func:`group`)."""

    name: str
    queries: list
    keys: list
    weights: np.ndarray
    block: int = 1
    layer_names: list = None  # a label per layer (default its index): Gemma 3's say which are sliding


# --- running the models ------------------------------------------------------------------------------------
def _task_label(tok):
    """How a task tokenizer's symbol is shown: words as they are, a character's space as a visible ␣."""
    return (lambda s: s) if tok.split_words else (lambda s: "␣" if s == " " else s)


def _task_attention(name, text):
    model = load_shipped(name)
    task, params, tok, cfg = model.task, model.params, model.tokenizer, model.config
    src = tok.encode(text)
    _check_length(len(src), cfg.max_len, f"the {name} model")
    show = _task_label(tok)
    labels = [show(tok.symbols[i]) for i in src]
    if task.kind == "classify":
        logits, weights = model.forward_with_attention(np.array([src]))
        label = task.labels[int(np.argmax(logits[0]))]
        return f"{name}: {_quote(text)} -> {label}", [Attention("encoder self-attention", labels, labels,
                                                           _stack(weights))]
    out = predict(task, params, [text])[0]
    tgt = [BOS] + tok.encode(out) + [EOS]
    _, att = model.forward_with_attention(np.array([src]), np.array([tgt[:-1]]))
    out_labels = [show(tok.symbols[i]) for i in tgt[:-1]]
    return f"{name}: {_quote(text)} -> {_quote(out)}", [
        Attention("encoder self-attention", labels, labels, _stack(att["encoder"])),
        Attention("decoder masked self-attention", out_labels, out_labels, _stack(att["decoder_self"])),
        Attention("decoder cross-attention", out_labels, labels, _stack(att["decoder_cross"]))]


def _minilm_attention(text):
    model = load("minilm")
    n = len(model.tokenizer.tokenize(text)) + 2  # [CLS] … [SEP]; the tokenizer would truncate: refuse instead
    _check_length(n, model.tokenizer.max_length, "all-MiniLM-L6-v2")
    tokens, weights = model.attention(text)
    return f"all-MiniLM-L6-v2: {_quote(text)} ({n} tokens)", [Attention("self-attention", tokens, tokens,
                                                      np.stack(weights).astype(np.float32))]


def _token_labels(model, ids):
    return [model.tokenizer.decode([int(i)]) for i in ids]


def layer_names(cfg):
    """A label per layer: its index, and for a model with windows its kind ("0 · sliding W=512", "5 · global")."""
    if all(w is None for w in cfg.windows):
        return [str(i) for i in range(cfg.n_layers)]
    return [f"{i} · global" if w is None else f"{i} · sliding W={w}" for i, w in enumerate(cfg.windows)]


def _llm_attention(name, text, model=None, max_weights=MAX_WEIGHTS):
    """A pretrained LLM's (``name``, one of LLMS) attention on its prompt ids for ``text``, each layer's weights
    grouped in blocks as soon as they are computed (the page's block, from the layers × heads × T² numbers and
    ``max_weights``), so memory is one layer's weights and the grouped ones; a text whose one layer of weights
    would pass MAX_LAYER_BYTES is refused."""
    model = model or load(name)
    ids = model.prompt_ids(text)
    cfg = model.config
    _check_length(len(ids), cfg.max_len, LLMS[name])
    T = len(ids)
    layer_bytes = cfg.n_heads * T * T * 4
    if layer_bytes > MAX_LAYER_BYTES:
        most = math.isqrt(MAX_LAYER_BYTES // (4 * cfg.n_heads))
        raise ValueError(f"text: {T:,} tokens; the explorer draws at most {most:,} tokens of {LLMS[name]} (one "
                         f"layer's {cfg.n_heads} × T × T weights, {layer_bytes / 2**30:.1f} GiB at {T:,}, are formed "
                         "whole)")
    block = page_block(cfg.n_layers * cfg.n_heads * T * T, max_weights)
    labels = block_labels(_token_labels(model, ids), block)
    _, weights = model.forward(model.params, np.asarray(ids)[None], cfg, need_weights=True, last_only=True,
                               reduce_weights=lambda w: group_weights(np.asarray(w)[0], block))
    att = Attention("causal self-attention", labels, labels, np.stack(weights), block, layer_names(cfg))
    return f"{LLMS[name]}: {_quote(text)} ({T} tokens)", [att]


# the compressed variants the compare view can set beside float32: (efficient.compress method, its options)
VARIANTS = {"int8": ("int8", {}), "bf16": ("bfloat16", {}), "pruned-50": ("magnitude", {"sparsity": 0.5})}


def kl_divergence(p, q):
    r"""KL(p ‖ q) = Σ_v p_v (log p_v − log q_v), in nats, over the entries where p_v > 0."""
    keep = p > 0
    return float(np.sum(p[keep] * (np.log(p[keep]) - np.log(q[keep]))))


def _steps(session, new_tokens, label, top_k, views, compare=None, eos=None):
    """Greedy decoding through decoding's loop (``decoding.search.greedy``), recorded by its per-step hook: each
    step's token, its top-k, ``views(session.weights)`` ({view name: the new token's weights (L, H, n)}) and the
    cache's bytes and positions.  ``compare``, a session of a compressed model, is fed the same tokens and gives
    its top-k and KL(float32 ‖ it).  Stops after ``eos``."""
    steps = []

    def record(step, session, tokens):
        p = softmax(np.asarray(session.next_logits[0], np.float64))
        top = np.argsort(-p, kind="stable")[:top_k]
        token = int(tokens[0])  # greedy: top[0]
        entry = {"token": label(token), "id": token, "top": [[label(i), float(p[i])] for i in top],
                 "kv_bytes": int(session.cache_bytes()), "positions": int(session.cache.length),
                 **views(session.weights)}
        if compare is not None:
            if step:
                compare.append([steps[-1]["id"]])
            q = softmax(np.asarray(compare.next_logits[0], np.float64))
            q_top = np.argsort(-q, kind="stable")[:top_k]
            entry["compare"] = {"top": [[label(i), float(q[i])] for i in q_top], "kl": kl_divergence(p, q),
                                "same_choice": bool(int(q_top[0]) == token)}
        steps.append(entry)

    if new_tokens:
        greedy(session, new_tokens, eos_id=eos, on_step=record)
    return steps


def _last_query(weights, S=None):
    """[(1, H, T, S_l) per layer] -> the last query's weights (L, H, S), float32: a layer whose cache returned only
    its window's last S_l < S keys is padded with the zeros its earlier keys get."""
    S = max(np.asarray(w).shape[-1] for w in weights) if S is None else S
    rows = [np.asarray(w)[0, :, -1, :] for w in weights]
    return np.stack([np.pad(r, ((0, 0), (S - r.shape[-1], 0))) for r in rows]).astype(np.float32)


def llm_generation(text, new_tokens, top_k=5, compare=None, model=None, name="smollm2"):
    """Greedy generation of ``new_tokens`` tokens after ``text`` with a pretrained LLM (``name``, one of LLMS) and
    its KV cache, step by step: each step's token, its top-k next-token probabilities, the new token's attention
    over every position so far in every layer and head (``weights`` (L, H, S)), and the cache's bytes after the
    step.  ``compare`` (a VARIANTS name): the compressed model, fed the same tokens with a cache of its own, gives
    its top-k and KL(float32 ‖ variant).  ``model``: that LLM already loaded (else it is loaded here).
    Returns (the prompt's token labels, steps)."""
    _check_generation(new_tokens, compare)
    model = model or load(name)
    ids = model.prompt_ids(text)
    if len(ids) + new_tokens - 1 > model.config.max_len:  # the last token chosen is never fed
        raise ValueError(f"generate: {len(ids)} prompt tokens and {new_tokens} new ones exceed {LLMS[name]}'s "
                         f"context of {model.config.max_len}")
    session = LMSession(model, [ids], need_weights=True)
    variant = _variant(model.params, compare)
    compare_session = None if variant is None else LMSession(model.with_params(variant), [ids])
    label = lambda i: _token_labels(model, [i])[0]  # noqa: E731
    views = lambda weights: {"weights": _last_query(weights, session.cache.length)}  # noqa: E731
    return _token_labels(model, ids), _steps(session, new_tokens, label, top_k, views, compare_session)


def _check_generation(new_tokens, compare):
    check_int("new_tokens", new_tokens, low=0)
    if compare is not None:
        check_choice("compare", compare, VARIANTS)


def _variant(params, compare):
    """The params tree compressed as the VARIANTS entry ``compare`` says (None: no comparison)."""
    if compare is None:
        return None
    method, options = VARIANTS[compare]
    return compress(params, method, **options)


def task_generation(name, text, new_tokens, top_k=5, compare=None):
    """Greedy decoding of a trained encoder-decoder (``dates``, ``reverse``) on ``text``, step by step with the
    decoder's KV cache, up to ``new_tokens`` tokens or the end token: each step's token and top-k, the new
    token's masked self-attention over the output so far (``weights`` (L, H, t)) and its cross-attention over
    the source (``cross`` (L, H, S)), the cache's bytes (self-attention k, v of t positions, and the source's
    cross-attention k, v, computed once).  ``compare`` as in :func:`smollm2_generation`.
    Returns (the decoder's first input's label, the source's labels, steps)."""
    _check_generation(new_tokens, compare)
    model = load_shipped(name)
    task, params, tok, cfg = model.task, model.params, model.tokenizer, model.config
    if task.kind != "seq2seq":
        raise ValueError(f"generate: the {name} model classifies, it does not generate")
    src = tok.encode(text)
    _check_length(len(src), cfg.max_len, f"the {name} model")
    if new_tokens > cfg.max_len:  # the decoder reads <s> and every token but the last
        raise ValueError(f"generate: {new_tokens} tokens need {new_tokens} decoder positions, more than the {name} "
                         f"model's context of {cfg.max_len}")
    show = _task_label(tok)
    session = Seq2SeqSession(model, [src], BOS, need_weights=True)
    variant = _variant(params, compare)
    compare_session = None if variant is None else Seq2SeqSession(model.with_params(variant), [src], BOS)
    views = lambda weights: {"weights": _last_query([s for s, _ in weights]),  # noqa: E731 - (L, H, t)
                             "cross": _last_query([c for _, c in weights])}  # (L, H, S)
    steps = _steps(session, new_tokens, lambda i: show(tok.symbols[i]), top_k, views, compare_session, eos=EOS)
    return [show(tok.symbols[BOS])], [show(tok.symbols[i]) for i in src], steps


def _stack(per_layer):
    """[weights (1, H, T_q, T_k) per layer] -> (L, H, T_q, T_k) float32."""
    return np.stack([np.asarray(w)[0] for w in per_layer]).astype(np.float32)


def _quote(text, limit=80):
    """The text as the page's title shows it: quoted, cut to ``limit`` characters."""
    return repr(text if len(text) <= limit else text[:limit - 1] + "…")


def _check_text(text):
    if not isinstance(text, str) or not text.strip():
        raise ValueError("text must be a non-empty string")


def _check_length(n, limit, what):
    if n > limit:
        raise ValueError(f"text: {n} tokens, longer than {what}'s context of {limit}")


def attentions(model, text, llm=None, max_weights=MAX_WEIGHTS):
    """(title, [Attention]) of ``model`` (one of MODELS) on ``text`` (``llm``: that pretrained LLM already loaded;
    max_weights: the page's budget, which an LLM's layers are grouped to as they run)."""
    check_choice("model", model, MODELS)
    _check_text(text)
    if model == "minilm":
        return _minilm_attention(text)
    if model in LLMS:
        return _llm_attention(model, text, llm, max_weights)
    return _task_attention(model, text)


# --- the page ----------------------------------------------------------------------------------------------
def _block_sums(a, block, axis):
    """``a`` summed over blocks of ``block`` consecutive entries along ``axis`` (the last block may be shorter),
    in float64."""
    n = a.shape[axis]
    starts = np.arange(0, n, block)
    return np.add.reduceat(np.asarray(a, np.float64), starts, axis=axis)


def group_weights(w, block):
    """Weights (..., T_q, T_k) with queries and keys grouped in blocks of ``block`` tokens: a block's row is the mean
    of its queries' rows, its column the sum of its keys' columns (rows keep summing to one); float32."""
    if block == 1:
        return np.asarray(w, np.float32)
    summed = _block_sums(_block_sums(w, block, -1), block, -2)  # (..., nq, nk)
    Tq = w.shape[-2]
    rows = np.minimum(block, Tq - np.arange(0, Tq, block))[:, None]  # real queries in each block
    return (summed / rows).astype(np.float32)


def page_block(total, max_weights):
    """The block b that brings ``total`` attention weights (queries × keys, both grouped) within ``max_weights``."""
    return 1 if total <= max_weights else math.ceil(math.sqrt(total / max_weights))


def block_labels(tokens, block):
    """A label per block of ``block`` tokens: its first token and span, "the…[8:16]" (the tokens when block = 1)."""
    if block == 1:
        return list(tokens)
    return [f"{tokens[i]}…[{i}:{min(i + block, len(tokens))}]" for i in range(0, len(tokens), block)]


def group(att, block):
    """``att`` with queries and keys grouped in blocks of ``block`` tokens (:func:`group_weights`), labelled by
    their first token and span."""
    if block == 1:
        return att
    return Attention(att.name, block_labels(att.queries, block), block_labels(att.keys, block),
                     group_weights(att.weights, block), att.block * block, att.layer_names)


def _b64(a):
    return base64.b64encode(np.ascontiguousarray(a, dtype="<f4").tobytes()).decode("ascii")


def group_positions(w, block):
    """Weights over positions (..., S) summed in blocks of ``block`` positions: (..., ceil(S / block)); a row that
    sums to one still does."""
    return w if block == 1 else _block_sums(w, block, -1).astype(np.float32)


def generation_data(prompt, steps, compare=None, source=None, max_weights=MAX_WEIGHTS):
    """The generation view's content: the tokens before the first generated one, the source's tokens (an
    encoder-decoder's: its cross-attention's keys) and each step with its weights as base64 float32 (and the
    name of the compressed variant the steps compare with).  Past ``max_weights`` numbers in all, positions are
    summed in blocks (``block``; the page labels them the same way)."""
    total = sum(st["weights"].size + (st["cross"].size if "cross" in st else 0) for st in steps)
    block = 1 if total <= max_weights else math.ceil(total / max_weights)

    def encoded(st):
        out = {k: v for k, v in st.items() if k not in ("weights", "cross")}
        out.update(layers=st["weights"].shape[0], heads=st["weights"].shape[1],
                   weights=_b64(group_positions(st["weights"], block)))
        if "cross" in st:
            out["cross"] = _b64(group_positions(st["cross"], block))
        return out
    return {"prompt": list(map(str, prompt)), "compare": compare, "block": block,
            "source": None if source is None else list(map(str, source)), "steps": [encoded(st) for st in steps]}


def page_data(title, atts, max_weights=MAX_WEIGHTS, generation=None):
    """The JSON-able content of a page: each attention's labels and weights (base64 of little-endian float32,
    L × H × T_q × T_k), grouped in blocks when the page would hold more than ``max_weights`` numbers; with
    ``generation`` (the keyword arguments of :func:`generation_data`) the generation view's steps too."""
    block = page_block(sum(a.weights.size for a in atts), max_weights)
    out = []
    grouped = [group(a, block) for a in atts]
    for a in grouped:
        L, H, Tq, Tk = a.weights.shape
        out.append({"name": a.name, "layers": L, "heads": H, "queries": list(map(str, a.queries)),
                    "keys": list(map(str, a.keys)), "weights": _b64(a.weights),
                    "layer_names": list(a.layer_names or map(str, range(L)))})
    data = {"title": title, "block": max((a.block for a in grouped), default=block), "attentions": out}
    if generation is not None:
        data["generation"] = generation_data(**generation, max_weights=max_weights)
    return data


def _asset(name):
    return importlib.resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def render(data):
    """The whole page: the data as JSON in a script element, the explorer's script and style inline."""
    # every "<" as the JSON escape \u003c: neither "</script>" nor "<!--" (which would make the browser's script
    # parser swallow the rest of the page) can appear inside the data script
    payload = json.dumps(data, sort_keys=True, ensure_ascii=True).replace("<", "\\u003c")
    return (f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(data['title'])}</title>\n<style>\n{_asset('explore.css')}</style>\n</head>\n"
            f"<body>\n<h1 id=\"title\"></h1>\n<p id=\"note\"></p>\n<div id=\"controls\"></div>\n"
            f"<div id=\"views\"><section id=\"head-view\"></section><section id=\"model-view\"></section></div>\n"
            f"<section id=\"generation-view\"></section>\n"
            f"<script type=\"application/json\" id=\"data\">{payload}</script>\n"
            f"<script>\n{_asset('explore.js')}</script>\n</body>\n</html>\n")


class Page:
    """An explorer page: ``html`` (the file's text), ``save(path)`` (written atomically), and shown inline in
    Jupyter (an iframe holding the page, so its script runs apart from the notebook's)."""

    def __init__(self, html_text):
        self.html = html_text

    def save(self, path):
        atomic_write(path, lambda f: f.write(self.html), mode="w")
        return path

    def _repr_html_(self):
        return (f"<iframe srcdoc=\"{html.escape(self.html, quote=True)}\" "
                "style=\"width:100%;height:720px;border:1px solid #ccc\"></iframe>")

    def __repr__(self):  # what a viewer that runs no script shows (a repository's notebook page), and a terminal
        return (f"<attention explorer page, {len(self.html):,} characters: interactive where the notebook runs "
                "(Jupyter); page.save('page.html') writes it for any browser>")


GENERATES = ("dates", "reverse", "smollm2", "gemma3")  # the models whose generation the page can step through


def explore(model, text, generate=0, compare=None, max_weights=MAX_WEIGHTS):
    """The explorer page of ``model`` (one of MODELS) on ``text``: a :class:`Page`; with ``generate`` N > 0 (a
    model of GENERATES) also the generation view, N greedy steps with the KV cache (an encoder-decoder stops at
    its end token); with ``compare`` (a VARIANTS name) each step also sets the compressed model's next-token
    distribution beside float32's, with their KL."""
    check_choice("model", model, MODELS)  # the arguments first: no model loads for a call that cannot finish
    _check_text(text)
    check_int("generate", generate, low=0)
    if compare is not None:
        check_choice("compare", compare, VARIANTS)
        if not generate:
            raise ValueError("compare: the comparison is made at each generated token; give generate N > 0 too")
    if generate and model not in GENERATES:
        raise ValueError(f"generate: only {', '.join(GENERATES)} can be stepped through here, not {model!r}")
    lm = load(model) if model in LLMS else None  # loaded once for both views
    title, atts = attentions(model, text, lm, max_weights)
    generation = None
    if generate and model in LLMS:
        prompt, steps = llm_generation(text, generate, compare=compare, model=lm, name=model)
        generation = {"prompt": prompt, "steps": steps, "compare": compare}
    elif generate:
        prompt, source, steps = task_generation(model, text, generate, compare=compare)
        generation = {"prompt": prompt, "steps": steps, "compare": compare, "source": source}
    return Page(render(page_data(title, atts, max_weights, generation)))
