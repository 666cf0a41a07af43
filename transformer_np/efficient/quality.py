r"""What compression costs in quality, measured: perplexity on a fixed text, activation statistics from a
calibration text.

    perplexity = \exp\big(-\frac{1}{N} \sum_t \log p(x_{t+1} \mid x_{\le t})\big)

over non-overlapping windows of ``window`` tokens (each window's first token is context only).  The texts are
frozen in the package (``data/``, the Python standard library's docstrings under the PSF licence): the
evaluation text and, disjoint from it, the calibration text that SmoothQuant and Wanda read.
"""

from __future__ import annotations

import importlib.resources
import math
import time

import numpy as np

from ..core.nn import log_softmax
from ..core.tree import flatten, map_weights, params_nbytes
from ..core.weights import StoredWeight
from ..decoding.cache import contiguous_cache
from ..decoding.search import greedy
from ..decoding.sessions import LMSession
from ..model.protocol import DecoderModel
from .compress import compress
from .kv_int8 import int8_cache_factory


def eval_text():
    """The evaluation text (≈ 85,000 characters, 23,294 SmolLM2 tokens)."""
    return importlib.resources.files(__package__).joinpath("data/eval_text.txt").read_text(encoding="utf-8")


def calibration_text():
    """The calibration text (≈ 39,000 characters, 10,244 SmolLM2 tokens), disjoint from eval_text."""
    return importlib.resources.files(__package__).joinpath("data/calibration_text.txt").read_text(encoding="utf-8")


def token_nll(model, ids, window=512):
    """-log p(x_{t+1} | window so far) for every predicted token: ids (N,) -> float64 (number predicted,).
    ``model.step(ids (1, T))`` gives the logits (1, T, V)."""
    ids = np.asarray(ids, dtype=np.int64)
    out = []
    for start in range(0, len(ids) - 1, window):
        chunk = ids[start:start + window]
        if len(chunk) < 2:
            break
        logp = log_softmax(np.asarray(model.step(chunk[None]))[0, :-1].astype(np.float64))  # (T-1, V)
        out.append(-logp[np.arange(len(chunk) - 1), chunk[1:]])
    return np.concatenate(out)


def perplexity(model, ids, window=512):
    """(perplexity, tokens predicted, seconds): exp of the mean token_nll, and how long the passes took."""
    t0 = time.perf_counter()
    nll = token_nll(model, ids, window)
    return float(np.exp(nll.mean())), len(nll), time.perf_counter() - t0


class ActivationRecorder(StoredWeight):
    """A float weight that records what flows into it: per input channel j, max |X_j| and Σ X_j² over every row
    of every product (SmoothQuant reads the first, Wanda the square root of the second)."""

    def __init__(self, w, path):
        super().__init__(w.shape)
        self.w, self.path, self.compute_dtype = w, path, w.dtype
        self.absmax = np.zeros(w.shape[0], np.float32)
        self.sumsq = np.zeros(w.shape[0], np.float64)

    @property
    def nbytes(self):
        return self.w.nbytes

    def dequantize_stored(self, rows=None):
        return self.w if rows is None else np.take(self.w, rows, axis=0)

    def matmul(self, x):
        if not self.transposed:
            a = np.abs(np.asarray(x))
            self.absmax = np.maximum(self.absmax, a.max(axis=0))
            self.sumsq += (a.astype(np.float64) ** 2).sum(axis=0)
        return x @ self.dequantize()


def record_activations(model, ids, window=512, skip=("embed",)):
    """Run ``model`` over ids with every weight wrapped in an ActivationRecorder; returns {path: recorder}.
    The model itself is not changed (the recorders run on a copy holding them)."""
    recorders = {}

    def wrap(path, w):
        if path.split("/")[0] in skip:
            return w
        recorders[path] = ActivationRecorder(w, path)
        return recorders[path]

    token_nll(model.with_params(map_weights(model.params, wrap)), ids, window)
    return recorders


class _FreshCache(DecoderModel):
    """A model whose every step(ids) runs through a new cache from ``factory(n_layers, batch)``: a prefill that
    reads K and V back from that cache (e.g. int8), as decoding would."""

    def __init__(self, model, factory):
        self.model, self.factory = model, factory
        self.params, self.config = model.params, model.config

    def step(self, ids, **kw):
        return self.model.step(ids, cache=self.factory(self.config.n_layers, ids.shape[0]))

    def attention(self, ids):
        return self.model.attention(ids)


def decode_speed(model, prompt, new_tokens=32, make_cache=contiguous_cache):
    """Greedy decoding tokens per second after ``prompt`` (the KV cache from ``make_cache(n_layers, batch)``)."""
    session = LMSession(model, [list(prompt)], make_cache=make_cache)
    t0 = time.perf_counter()
    greedy(session, new_tokens)
    return new_tokens / (time.perf_counter() - t0)


def compressed_bits(params):
    """Bits per weight of the compressed matrices (every 2-D weight outside the embedding table)."""
    flat = {p: w for p, w in flatten(params).items() if getattr(w, "ndim", 0) == 2 and not p.startswith("embed")}
    return 8 * sum(w.nbytes for w in flat.values()) / sum(math.prod(w.shape) for w in flat.values())


def measure(model, method, ids, recorders=None, decode_tokens=32, **options):
    """Measure a copy of ``model`` (a decoder model: params, config, step) compressed by ``method``; the model itself
    is left as it is.
    Returns {method, options…, perplexity, tokens, weight_bytes, bits_per_weight, eval_seconds, decode_tok_s}."""
    keys = options.pop("keys", "token") if method == "kv-int8" else None  # the int8 cache's key quantization
    small = model.with_params(compress(model.params, method, recorders=recorders, **options))
    make_cache = int8_cache_factory(keys) if method == "kv-int8" else contiguous_cache
    runner = _FreshCache(small, make_cache) if method == "kv-int8" else small
    ppl, n, seconds = perplexity(runner, ids)
    speed = decode_speed(small, ids[:16], decode_tokens, make_cache) if decode_tokens else None
    return {"method": method, **options, **({"keys": keys} if keys else {}), "perplexity": ppl, "tokens": n,
            "weight_bytes": params_nbytes(small.params), "bits_per_weight": compressed_bits(small.params),
            "eval_seconds": seconds, "decode_tok_s": speed}
