r"""What compression costs in quality, measured: perplexity and the KL divergence from the float32 model on a fixed
text, each with its standard error, and activation statistics from a calibration text.

    perplexity = \exp\big(-\frac{1}{N} \sum_t \log p(x_{t+1} \mid x_{\le t})\big)

over windows of ``window`` tokens every ``stride`` (by default none overlap, and each window's first token is
context only; see :func:`windows`).  The texts are frozen in the package (``data/``, the Python standard
library's docstrings under the PSF licence): the evaluation text and, disjoint from it, the calibration text that
GPTQ, AWQ, SmoothQuant and Wanda read.
"""

from __future__ import annotations

import importlib.resources
import math
import time

import numpy as np

from ..core.checks import check_positive_int
from ..core.nn import log_softmax
from ..core.tree import flatten, map_weights, params_nbytes
from ..core.weights import StoredWeight
from ..decoding.cache import contiguous_cache
from ..decoding.search import greedy
from ..decoding.sessions import LMSession
from ..model.protocol import DecoderModel
from .compress import CALIBRATION, NEEDS_CALIBRATION, compress
from .kv_int8 import int8_cache_factory


def eval_text():
    """The evaluation text (≈ 85,000 characters, 23,294 SmolLM2 tokens)."""
    return importlib.resources.files(__package__).joinpath("data/eval_text.txt").read_text(encoding="utf-8")


def calibration_text():
    """The calibration text (≈ 39,000 characters, 10,244 SmolLM2 tokens), disjoint from eval_text."""
    return importlib.resources.files(__package__).joinpath("data/calibration_text.txt").read_text(encoding="utf-8")


def windows(n, window=512, stride=None):
    """(start, stop, first) of each evaluation window over n tokens: ``window`` tokens every ``stride`` (default
    ``window``: no overlap); a window scores tokens first … stop − 1, those no earlier window scored (a token is
    predicted from the logits one position before it, inside the window).  With stride < window every scored
    token after the first window has at least window − stride tokens of context; without overlap each window's
    first token is context only."""
    check_positive_int("window", window)
    stride = window if stride is None else stride
    check_positive_int("stride", stride)
    if stride > window:
        raise ValueError(f"stride={stride} must be at most window={window} (tokens would be skipped)")
    out, scored_to, start = [], 1, 0
    while start < n - 1:
        stop = min(start + window, n)
        first = max(start + 1, scored_to)
        if first < stop:
            out.append((start, stop, first))
            scored_to = stop
        if stop == n:
            break
        start += stride
    return out


def _log_probs(model, chunk, rows):
    """float64 log-softmax of ``model``'s logits at the given rows of one window (the next-token distributions)."""
    return log_softmax(np.asarray(model.step(chunk[None]))[0, rows].astype(np.float64))


class ReferenceLogits:
    """A reference model's logits at the scored rows of every evaluation window of ``ids``, computed once
    (one pass) and read by :func:`token_scores` in place of running the reference again: every compressed model of
    a table is compared with the same float32 model, so the table costs one pass a row instead of two.  The
    scores are the same bit for bit (the log-softmax is taken at use, in float64, as for a model).  Memory: scored
    tokens × V × 4 bytes (23,248 × 49,152: 4.6 GB for SmolLM2 on the whole evaluation text)."""

    def __init__(self, model, ids, window=512, stride=None, progress=None):
        self.ids, self.window, self.stride = np.asarray(ids, dtype=np.int64), window, stride
        self.logits = []
        for start, stop, first in windows(len(self.ids), window, stride):
            rows = slice(first - start - 1, stop - start - 1)
            self.logits.append(np.array(np.asarray(model.step(self.ids[start:stop][None]))[0, rows]))  # its dtype
            if progress is not None:
                progress(1)

    def log_probs(self, i, ids, window, stride):
        """float64 log-softmax of window i's stored logits; the windows must be the ones it was computed on."""
        if (window, stride) != (self.window, self.stride) or not np.array_equal(ids, self.ids):
            raise ValueError(f"reference: logits computed for window={self.window}, stride={self.stride} on "
                             f"{len(self.ids)} tokens, asked for window={window}, stride={stride} on {len(ids)} "
                             "tokens (or other token ids)")
        return log_softmax(self.logits[i].astype(np.float64))


def token_scores(model, ids, window=512, stride=None, reference=None, progress=None):
    r"""Per predicted token of ``ids`` (N,): ``nll`` = −log p(x_{t+1} | the window so far) under ``model`` and, with a
    ``reference`` model (e.g. float32), ``kl`` = KL(p_ref ‖ p) = Σ_v p_ref,v (log p_ref,v − log p_v) in nats, the
    reference's ``ref_nll`` and ``top1`` (whether both put the same token first) — llama.cpp's
    ``--kl-divergence``.  ``model.step(ids (1, T))`` gives the logits (1, T, V); ``reference`` is a model or a
    :class:`ReferenceLogits` computed on the same ids and windows.  progress(1) after each window
    (``windows(len(ids), window, stride)`` of them), if given.  Returns {name: float64 (n,)}."""
    ids = np.asarray(ids, dtype=np.int64)
    out = {k: [] for k in (("nll", "ref_nll", "kl", "top1") if reference is not None else ("nll",))}
    for i, (start, stop, first) in enumerate(windows(len(ids), window, stride)):
        chunk, targets = ids[start:stop], ids[first:stop]
        rows = slice(first - start - 1, stop - start - 1)  # the logits that predict tokens first … stop − 1
        logp = _log_probs(model, chunk, rows)  # (n, V)
        out["nll"].append(-logp[np.arange(len(targets)), targets])
        if reference is None:
            if progress is not None:
                progress(1)
            continue
        if isinstance(reference, ReferenceLogits):
            logr = reference.log_probs(i, ids, window, stride)
        else:
            logr = logp if reference is model else _log_probs(reference, chunk, rows)
        out["ref_nll"].append(-logr[np.arange(len(targets)), targets])
        out["kl"].append(np.maximum(np.sum(np.exp(logr) * (logr - logp), axis=-1), 0.0))  # ≥ 0; rounding aside
        out["top1"].append((np.argmax(logr, axis=-1) == np.argmax(logp, axis=-1)).astype(np.float64))
        if progress is not None:
            progress(1)
    return {k: np.concatenate(v) for k, v in out.items()}


def token_nll(model, ids, window=512, stride=None, progress=None):
    """-log p(x_{t+1} | window so far) for every predicted token: ids (N,) -> float64 (number predicted,)."""
    return token_scores(model, ids, window, stride, progress=progress)["nll"]


def mean_and_se(x):
    r"""(mean, standard error s/√n) of per-token values (tokens taken as independent: the usual approximation;
    neighbouring tokens correlate, so the true error is somewhat larger)."""
    x = np.asarray(x, np.float64)
    return float(x.mean()), float(x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else float("nan")


def percentile_and_se(x, q=99, n_boot=200, seed=0):
    """(the q-th percentile of x, its bootstrap standard error over ``n_boot`` resamples)."""
    x = np.asarray(x, np.float64)
    rng = np.random.default_rng(seed)
    boot = np.percentile(x[rng.integers(0, len(x), (n_boot, len(x)))], q, axis=1)
    return float(np.percentile(x, q)), float(boot.std(ddof=1))


def summarize(scores):
    r"""Perplexity exp(mean nll) with its standard error (delta method: ppl · se(mean nll)); with a reference,
    the mean and 99th percentile of the KL divergence and the top-1 agreement, each with its standard error."""
    nll, nll_se = mean_and_se(scores["nll"])
    ppl = math.exp(nll)
    out = {"perplexity": ppl, "perplexity_se": ppl * nll_se, "tokens": len(scores["nll"])}
    if "kl" in scores:
        kl, kl_se = mean_and_se(scores["kl"])
        p99, p99_se = percentile_and_se(scores["kl"])
        top1, top1_se = mean_and_se(scores["top1"])
        out |= {"kl_mean": kl, "kl_mean_se": kl_se, "kl_p99": p99, "kl_p99_se": p99_se, "top1": top1,
                "top1_se": top1_se}
    return out


def standard_errors_apart(a, b, key="kl_mean"):
    r"""How many standard errors two measurement rows differ by in ``key``: (a − b) / √(se_a² + se_b²), reading
    ``key`` and ``key + "_se"``.  Rows measured on the same tokens are positively correlated, so this (which
    treats them as independent) understates the significance: |z| > 2 is a safe ranking."""
    diff, se = a[key] - b[key], math.hypot(a[key + "_se"], b[key + "_se"])
    if se > 0:
        return diff / se
    return math.copysign(math.inf, diff) if diff else 0.0  # exact numbers: apart infinitely, or not at all


def perplexity(model, ids, window=512, stride=None):
    """(perplexity, tokens predicted, seconds): exp of the mean token_nll, and how long the passes took."""
    t0 = time.perf_counter()
    nll = token_nll(model, ids, window, stride)
    return float(np.exp(nll.mean())), len(nll), time.perf_counter() - t0


class ActivationRecorder(StoredWeight):
    """A float weight that records what flows into it: per input channel j, max |X_j|, Σ |X_j| and Σ X_j² over every
    row of every product (SmoothQuant reads the first, AWQ the mean of the second, Wanda the square root of the
    third), the number of rows, the first ``keep_rows`` rows themselves (AWQ searches its scales on them) and,
    with ``hessian``, H = XᵀX (C_in × C_in, float64: GPTQ's)."""

    def __init__(self, w, path, hessian=False, keep_rows=0):
        super().__init__(w.shape)
        self.w, self.path, self.compute_dtype = w, path, w.dtype
        self.absmax = np.zeros(w.shape[0], np.float32)
        self.sumabs = np.zeros(w.shape[0], np.float64)
        self.sumsq = np.zeros(w.shape[0], np.float64)
        self.rows, self.keep_rows, self.kept = 0, keep_rows, []
        self.xtx = np.zeros((w.shape[0], w.shape[0]), np.float64) if hessian else None

    @property
    def nbytes(self):
        return self.w.nbytes

    @property
    def absmean(self):
        """Mean |X_j| per input channel."""
        return self.sumabs / max(self.rows, 1)

    @property
    def sample(self):
        """The first keep_rows input rows seen, (n, C_in) float32."""
        return np.concatenate(self.kept) if self.kept else np.zeros((0, self.w.shape[0]), np.float32)

    def dequantize_stored(self, rows=None):
        return self.w if rows is None else np.take(self.w, rows, axis=0)

    def matmul(self, x):
        if not self.transposed:
            flat = np.asarray(x).reshape(-1, self.w.shape[0])
            a = np.abs(flat)
            self.absmax = np.maximum(self.absmax, a.max(axis=0))
            self.sumabs += a.sum(axis=0, dtype=np.float64)
            self.sumsq += (a.astype(np.float64) ** 2).sum(axis=0)
            room = self.keep_rows - sum(len(k) for k in self.kept)
            if room > 0:
                self.kept.append(np.array(flat[:room], np.float32))
            self.rows += len(flat)
            if self.xtx is not None:
                f64 = flat.astype(np.float64)
                self.xtx += f64.T @ f64
        return x @ self.dequantize()


def record_activations(model, ids, window=512, skip=("embed",), hessian=False, keep_rows=0, progress=None):
    """Run ``model`` over ids with every weight wrapped in an ActivationRecorder; returns {path: recorder}.
    The model itself is not changed (the recorders run on a copy holding them).  hessian: also XᵀX per weight
    (GPTQ; C_in² float64 each); keep_rows: also keep that many input rows per weight (AWQ); progress(1) after
    each window."""
    return record_with(model.params, lambda params: token_nll(model.with_params(params), ids, window,
                                                              progress=progress), skip, hessian, keep_rows)


def record_with(params, run, skip=("embed",), hessian=False, keep_rows=0):
    """{path: ActivationRecorder} of every matrix of ``params`` outside ``skip``, filled by ``run(wrapped)`` — a
    callable that runs the model on calibration inputs with the wrapped tree (a decoder's windows, an encoder's
    sentences).  ``params`` itself is not changed."""
    recorders = {}

    def wrap(path, w):
        if path.split("/")[0] in skip:
            return w
        recorders[path] = ActivationRecorder(w, path, hessian, keep_rows)
        return recorders[path]

    run(map_weights(params, wrap))
    return recorders


def calibrate(model, method, tokens=2048, progress=None):
    """The recorders ``method`` needs (compress.NEEDS_CALIBRATION; None for the others), read over the first
    ``tokens`` of the calibration text, with what the method asks beyond the statistics (compress.CALIBRATION)."""
    if method not in NEEDS_CALIBRATION:
        return None
    ids = model.tokenize(calibration_text())[:tokens]
    return record_activations(model, ids, progress=progress, **CALIBRATION.get(method, {}))


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


def measure(model, method, ids, recorders=None, decode_tokens=32, window=512, stride=None, reference=None,
            kl=True, progress=None, **options):
    """Measure a copy of ``model`` (a decoder model: params, config, step) compressed by ``method`` against
    ``reference`` (a model or a :class:`ReferenceLogits` of the same ids and windows; default: ``model`` itself,
    uncompressed); the model itself is left as it is.  kl=False:
    perplexity alone (one pass instead of two).  progress(1) after each evaluation window.
    Returns {method, options…, perplexity, perplexity_se, kl_mean, kl_mean_se, kl_p99, kl_p99_se, top1, top1_se,
    tokens, weight_bytes, bits_per_weight, eval_seconds, decode_tok_s}."""
    keys = options.pop("keys", "token") if method == "kv-int8" else None  # the int8 cache's key quantization
    small = model.with_params(compress(model.params, method, recorders=recorders, **options))
    make_cache = int8_cache_factory(keys) if method == "kv-int8" else contiguous_cache
    runner = _FreshCache(small, make_cache) if method == "kv-int8" else small
    reference = model if reference is None else reference
    t0 = time.perf_counter()
    same = method == "float32" and reference is model  # the reference itself: one pass, KL exactly 0
    scores = token_scores(runner, ids, window, stride, reference=(runner if same else reference) if kl else None,
                          progress=progress)
    seconds = time.perf_counter() - t0
    speed = decode_speed(small, ids[:16], decode_tokens, make_cache) if decode_tokens else None
    return {"method": method, **options, **({"keys": keys} if keys else {}), **summarize(scores),
            "weight_bytes": params_nbytes(small.params), "bits_per_weight": compressed_bits(small.params),
            "eval_seconds": seconds, "decode_tok_s": speed}
