"""Checkers for the notebooks' exercises.

Each ``check_*`` takes the learner's answer (usually a function), compares it with the package on inputs drawn
at random over every option its exercise allows (sizes, ε, bases, heads, padding sides, float32 and float64 where
the function keeps its input's dtype), and raises AssertionError with a hint when they differ — never with the
expected value, and no docstring states the formula asked for; when the answer is right it prints one line
saying so (the learner's feedback in the notebook: this module's only output) and returns True.  Given None (not
attempted) it prints where the reference solution is (``notebooks/solutions/``) and returns False.
tests/test_exercises.py gives every checker at least three plausible wrong answers, each rejected.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools

import numpy as np

from ..core.attention import scaled_dot_product_attention, split_heads
from ..core.embeddings import rope, sinusoidal_positional_encoding
from ..core.masks import causal_mask
from ..core.nn import (
    cross_entropy_backward,
    cross_entropy_forward,
    gelu,
    layer_norm,
    log_softmax,
    rms_norm,
    softmax,
    softmax_backward,
)
from ..core.tree import count_params, tree_map
from ..decoding.cache import kv_cache_bytes
from ..decoding.search import next_token_probs
from ..efficient import cost_model
from ..efficient.quantize import dequantize, pack_int4, quantize_symmetric
from ..efficient.simulated_partitioning import Mesh
from ..model.config import TransformerConfig
from ..model.models import Transformer
from ..model.params import param_shapes
from ..training.loop import evaluate
from ..training.optim import noam_lr
from ..training.shipped import load_trained

_DRAWS = [0]  # which draw of every checker's inputs: 0 the notebooks' own, n > 0 another (fresh_draws)


def _rng(seed):
    """The generator of a checker's inputs: the same draws every run, another set under ``fresh_draws(n)``."""
    return np.random.default_rng(seed if _DRAWS[0] == 0 else (seed, _DRAWS[0]))


@contextlib.contextmanager
def fresh_draws(n):
    """Inside this block every checker draws its random inputs afresh (set n of them, n ≥ 1): a grader's
    hidden tests, so an answer fitted to the inputs a notebook shows fails."""
    if not (isinstance(n, int) and n >= 1):
        raise ValueError(f"fresh_draws: n must be an int >= 1, got {n!r}")
    before, _DRAWS[0] = _DRAWS[0], n
    try:
        yield
    finally:
        _DRAWS[0] = before


def exercise(chapter):
    """Mark a checker as an exercise of ``notebooks/<chapter>.ipynb``: called with None (the learner's answer
    not written yet) it says where the reference solution is instead of checking."""
    def wrap(check):
        @functools.wraps(check)
        def checked(answer, *args):
            if answer is None:
                print(f"not attempted yet (reference solution: notebooks/solutions/{chapter}_solutions.ipynb)")
                return False
            return check(answer, *args)
        checked.chapter = chapter
        return checked
    return wrap


def _close(got, want, what, atol=1e-10):
    got = np.asarray(got)
    assert got.shape == np.shape(want), f"{what}: expected shape {np.shape(want)}, got {got.shape}"
    err = float(np.max(np.abs(got - want))) if got.size else 0.0
    assert err <= atol, f"{what}: largest difference {err:.3g} (allowed {atol:g})"


def _too(got, want):
    """Which way an integer answer is off, without saying the right one."""
    return "too high" if got > want else "too low"


def _dtype_kept(got, dtype, what):
    got, name = np.asarray(got), np.dtype(dtype).name
    assert got.dtype == dtype, f"{what}: a {name} input must give {name}, got {got.dtype}"


TOL = {np.float64: 1e-10, np.float32: 2e-5}  # what each dtype's rounding allows an answer written another way


def _done(name):
    print(f"✓ {name}: correct")
    return True


@exercise("01_embeddings_and_positional_encoding")
def check_positional_encoding(fn):
    """fn(max_len, d_model) -> the (max_len, d_model) sin-cos table, float64."""
    rng = _rng(25)
    for max_len, d in ((10, 4), (50, 16), (7, 6), (int(rng.integers(2, 80)), 2 * int(rng.integers(1, 40)))):
        _close(fn(max_len, d), sinusoidal_positional_encoding(max_len, d, dtype=np.float64),
               f"PE for max_len={max_len}, d_model={d}")
    return _done("positional encoding")


@exercise("01_embeddings_and_positional_encoding")
def check_rotation(fn):
    """fn(k, d_model) -> the (d, d) matrix M_k with PE[pos + k] = M_k @ PE[pos] for every pos."""
    rng = _rng(26)
    for k, d in ((1, 8), (3, 4), (10, 16), (int(rng.integers(2, 30)), 2 * int(rng.integers(3, 20)))):
        pe = sinusoidal_positional_encoding(60, d, dtype=np.float64)
        m = np.asarray(fn(k, d))
        assert m.shape == (d, d), f"M_{k} for d_model={d} must be ({d}, {d}), got {m.shape}"
        _close(pe[:-k] @ m.T, pe[k:], f"d_model={d}: M_{k} @ PE[pos] vs PE[pos+{k}]")
    return _done("rotation M_k")


@exercise("02_scaled_dot_product_attention")
def check_causal_mask(fn):
    """fn(T) -> (T, T) bool, True where query t may attend to key s."""
    for T in (1, 4, 9, int(_rng(31).integers(2, 40))):
        m = np.asarray(fn(T))
        assert m.dtype == bool, f"the mask must be boolean, got {m.dtype}"
        assert np.array_equal(m, causal_mask(T)), f"causal mask for T={T} is wrong:\n{m.astype(int)}"
    return _done("causal mask")


@exercise("02_scaled_dot_product_attention")
def check_attention(fn):
    """fn(q (B, T, D), k (B, S, D), v (B, S, D_v), mask (T, S) bool) -> (out, weights), as
    scaled_dot_product_attention: a masked key gets exactly zero weight, and a query whose keys are all masked
    gets zero weights and a zero output; float32 in, float32 out."""
    rng = _rng(1)
    for dtype in (np.float64, np.float32):
        B, T, S, D, Dv = 2, int(rng.integers(3, 7)), int(rng.integers(4, 9)), int(rng.integers(2, 9)), 5
        q, k, v = (rng.standard_normal(shape).astype(dtype) * 3 for shape in ((B, T, D), (B, S, D), (B, S, Dv)))
        mask = rng.random((T, S)) > 0.4
        mask[0, :] = False  # a query that may see no key at all
        mask[1:, 0] = True
        out, w = fn(q, k, v, mask)
        want_out, want_w = scaled_dot_product_attention(q, k, v, mask)
        _dtype_kept(out, dtype, "output")
        _close(np.asarray(w)[:, 0], want_w[:, 0], f"{np.dtype(dtype).name}: the weights of the query with every key "
               "masked (no key to attend to: zero weights, not a uniform spread nor NaN)", TOL[dtype])
        _close(w, want_w, f"{np.dtype(dtype).name}, T={T}, S={S}, D={D}: weights", TOL[dtype])
        _close(out, want_out, f"{np.dtype(dtype).name}, T={T}, S={S}, D={D}: output", TOL[dtype])
    return _done("scaled dot-product attention")


@exercise("03_multi_head_attention")
def check_split_heads(fn):
    """fn(x (B, T, C), H) -> (B, H, T, D)."""
    rng = _rng(2)
    for B, T, H, D in ((2, 3, 1, 12), (2, 3, 3, 4), (1, 5, 4, 3), (int(rng.integers(1, 4)), int(rng.integers(2, 9)),
                                                                 int(rng.integers(2, 7)), int(rng.integers(2, 6)))):
        x = rng.standard_normal((B, T, H * D))
        _close(fn(x, H), split_heads(x, H), f"({B}, {T}, {H * D}) split into {H} heads", atol=0)
    return _done("split heads")


@exercise("03_multi_head_attention")
def check_mha_param_count(fn):
    """fn(C) -> number of parameters of one multi-head attention block (W^Q, W^K, W^V, W^O and biases)."""
    rng = _rng(27)
    for C in (8, 512, 768, int(rng.integers(2, 2000))):
        want, got = 4 * C * C + 4 * C, fn(C)
        assert got == want, f"for C={C} your count is {_too(got, want)}; count every weight matrix and bias"
    return _done("multi-head attention parameter count")


@exercise("04_residual_layernorm_ffn")
def check_layer_norm(fn):
    """fn(x (..., C), gamma, beta, eps) -> layer norm over the last axis, in x's dtype."""
    rng = _rng(3)
    for dtype, eps, spread in ((np.float64, 1e-5, 3.0), (np.float64, 1e-2, 0.05), (np.float32, 1e-3, 0.1),
                               (np.float64, float(rng.uniform(1e-4, 0.5)), float(rng.uniform(0.01, 1)))):
        C = int(rng.integers(3, 12))
        x = (rng.standard_normal((4, C)) * spread + 1).astype(dtype)  # a small spread: eps matters
        g, b = rng.standard_normal(C).astype(dtype), rng.standard_normal(C).astype(dtype)
        got = fn(x, g, b, eps)
        _dtype_kept(got, dtype, "layer norm")
        _close(got, layer_norm(x, g, b, eps), f"layer norm of {np.dtype(dtype).name} rows of spread {spread:.2g}, "
               f"eps={eps:.2g} (biased variance? eps inside the root?)", TOL[dtype])
    return _done("layer norm")


@exercise("04_residual_layernorm_ffn")
def check_gelu(fn):
    """fn(x) -> exact GELU x * Phi(x)."""
    x = np.concatenate([np.linspace(-5, 5, 101), _rng(32).normal(0, 3, 50)])
    _close(fn(x), gelu(x), "GELU", atol=1e-7)
    return _done("GELU")


@exercise("05_encoder_decoder_forward")
def check_parameter_count(fn, cfg):
    """fn(cfg) -> the model's parameter count, as count_params of its params tree; checked on cfg and on random
    other configurations (so that a number copied from somewhere does not pass)."""
    rng = _rng(13)
    configs = [cfg]
    for i in range(8):  # every option: grouped-query heads, tied embeddings, the decoder-only architecture
        H = int(rng.choice([2, 4, 8]))
        decoder_only = i % 2 == 1
        configs.append(TransformerConfig(
            d_model=H * int(rng.choice([2, 4, 8])), n_heads=H, n_kv_heads=int(rng.choice([1, H // 2, H])),
            n_encoder_layers=0 if decoder_only else int(rng.integers(1, 4)), n_decoder_layers=int(rng.integers(1, 4)),
            d_ff=int(rng.integers(8, 64)), vocab_size=int(rng.integers(10, 100)), final_norm=bool(rng.integers(2)),
            tie_embeddings=i % 4 >= 2, architecture="decoder-only" if decoder_only else "encoder-decoder"))
    for i, c in enumerate(configs):
        want, got = count_params(param_shapes(c)), fn(c)
        assert got == want, (f"configuration {i} ({c.architecture}, C={c.d_model}, H={c.n_heads}, "
                             f"H_kv={c.n_kv_heads}, layers {c.n_encoder_layers}+{c.n_decoder_layers}, F={c.d_ff}, "
                             f"V={c.vocab_size}, final_norm={c.final_norm}, tie_embeddings={c.tie_embeddings}): "
                             f"your count is {_too(got, want)}")
    return _done(f"parameter count ({count_params(param_shapes(cfg)):,} for the configuration asked)")


@exercise("06_decoding_and_kv_cache")
def check_top_k(fn):
    """fn(probs (B, V), k) -> probabilities restricted to the k largest per row, renormalised."""
    rng = _rng(4)
    logits = rng.standard_normal((3, 9))
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    for k in (1, 3, 9):
        _close(fn(probs, k), next_token_probs(logits, top_k=k), f"top-k with k={k}", atol=1e-12)
    return _done("top-k filtering")


@exercise("06_decoding_and_kv_cache")
def check_kv_cache_bytes(fn):
    """fn(cfg, batch, tokens, itemsize) -> bytes of a decoder-only model's KV cache (cfg.n_kv_heads key/value
    heads where it is set: grouped-query attention; cfg.n_heads where it is None)."""
    rng = _rng(28)
    cases = [(TransformerConfig.lm_tiny(), 3, 10, 4),
             (TransformerConfig(d_model=768, n_heads=12, n_encoder_layers=0, n_decoder_layers=12,
                                architecture="decoder-only"), 1, 1024, 2),
             (TransformerConfig.lm_tiny(n_decoder_layers=3), 2, 7, 8)]
    for _ in range(4):
        H = int(rng.choice([4, 8, 16]))
        cases.append((TransformerConfig(d_model=H * int(rng.choice([8, 16])), n_heads=H,
                                        n_kv_heads=int(rng.choice([1, 2, H // 2])), n_encoder_layers=0,
                                        n_decoder_layers=int(rng.integers(1, 30)), architecture="decoder-only"),
                      int(rng.integers(1, 9)), int(rng.integers(1, 5000)), int(rng.choice([1, 2, 4]))))
    for cfg, B, t, itemsize in cases:
        want = kv_cache_bytes(cfg.n_decoder_layers, cfg.n_kv_heads or cfg.n_heads, cfg.d_head, t, itemsize) * B
        got = fn(cfg, B, t, itemsize)
        assert got == want, (f"for L={cfg.n_decoder_layers}, H={cfg.n_heads}, H_kv={cfg.n_kv_heads}, D={cfg.d_head}, "
                             f"{B} x {t} tokens of {itemsize} bytes your count is {_too(got, want)}")
    return _done("KV cache size")


@exercise("07_pretrained_minilm")
def check_mean_pooling(fn):
    """fn(x (B, T, C), mask (B, T) of 0/1) -> (B, C) mean of the unmasked token vectors."""
    rng = _rng(5)
    for side in ("right", "left"):  # left padding is what a decoding session uses
        B, T, C = int(rng.integers(3, 7)), int(rng.integers(4, 10)), int(rng.integers(2, 6))
        x = rng.standard_normal((B, T, C))
        lengths = rng.integers(1, T + 1, B)
        lengths[0] = T
        pos = np.arange(T)[None, :]
        mask = (pos < lengths[:, None]) if side == "right" else (pos >= T - lengths[:, None])
        want = np.stack([x[b][mask[b]].mean(0) for b in range(B)])
        _close(fn(x, mask.astype(np.int64)), want, f"mean pooling, {side} padding (padding must not count)")
    return _done("mean pooling")


@exercise("07_pretrained_minilm")
def check_ranking(fn):
    """fn(query (C,), corpus (N, C)) -> indices of corpus, most cosine-similar first."""
    rng = _rng(6)
    for N, C in ((8, 5), (int(rng.integers(5, 30)), int(rng.integers(2, 20)))):
        corpus, query = rng.standard_normal((N, C)) * rng.uniform(0.1, 10, (N, 1)), rng.standard_normal(C)
        cos = corpus @ query / (np.linalg.norm(corpus, axis=1) * np.linalg.norm(query))
        got = [int(i) for i in fn(query, corpus)]
        assert got == list(np.argsort(-cos)), "the order is not by cosine similarity, best first (normalise first?)"
    return _done("cosine ranking")


@exercise("08_training_in_numpy")
def check_softmax_backward(fn):
    """fn(dy, y) -> dx for y = softmax(x)."""
    rng = _rng(8)
    for dtype, shape in ((np.float64, (4, 6)), (np.float32, (3, 9)), (np.float64, (2, 3, int(rng.integers(2, 12))))):
        x, dy = (rng.standard_normal(shape).astype(dtype) for _ in range(2))
        y = softmax(x)
        got = fn(dy, y)
        _dtype_kept(got, dtype, "softmax backward")
        _close(got, softmax_backward(dy, y), f"softmax backward of a {shape} {np.dtype(dtype).name} array",
               atol=TOL[dtype])
    return _done("softmax backward")


@exercise("08_training_in_numpy")
def check_schedule(fn):
    """fn(step, d_model, warmup) -> the paper's learning rate."""
    rng = _rng(29)
    for step, d, w in ((1, 512, 4000), (4000, 512, 4000), (10000, 64, 400), (50, 128, 100),
                       (int(rng.integers(1, 500)), int(rng.integers(16, 1024)), int(rng.integers(500, 5000)))):
        _close(fn(step, d, w), noam_lr(step, d, w), f"lrate at step {step}, d_model={d}, warmup={w}", atol=1e-15)
    return _done("learning-rate schedule")


@exercise("09_modern_llm")
def check_rms_norm(fn):
    """fn(x (..., C), gamma (C,), eps) -> RMSNorm(x), in x's dtype."""
    rng = _rng(9)
    for dtype, eps, scale in ((np.float64, 1e-5, 1.0), (np.float64, 1e-2, 0.05), (np.float32, 1e-6, 0.01),
                              (np.float64, float(rng.uniform(1e-4, 0.5)), float(rng.uniform(0.01, 1)))):
        C = int(rng.integers(3, 12))
        x, gamma = (rng.standard_normal((3, C)) * scale).astype(dtype), rng.standard_normal(C).astype(dtype)
        got = fn(x, gamma, eps)
        _dtype_kept(got, dtype, "RMSNorm")
        _close(got, rms_norm(x, gamma, eps), f"RMSNorm of {np.dtype(dtype).name} values of scale {scale:.2g}, "
               f"eps={eps:.2g}", TOL[dtype])
    return _done("RMSNorm")


@exercise("09_modern_llm")
def check_rope(fn):
    """fn(x (T, D), positions (T,), base) -> x with each pair (x_2i, x_2i+1) rotated by pos · base^(-2i/D)."""
    rng = _rng(10)
    for D, base, pos in ((8, 100.0, np.array([0, 1, 4, 9, 30])), (16, 10000.0, np.arange(6)),
                         (2 * int(rng.integers(2, 12)), float(rng.uniform(10, 1e6)), rng.integers(0, 500, 7))):
        x = rng.standard_normal((len(pos), D))
        _close(fn(x, pos, base), rope(x, pos, base, "pairs"), f"RoPE, D={D}, base={base:.4g} (pairs layout)",
               atol=1e-10)
    return _done("rotary position embedding")


@exercise("09_modern_llm")
def check_gqa_cache_bytes(fn):
    """fn(n_layers, n_kv_heads, d_head, tokens, itemsize) -> bytes of a grouped-query model's KV cache."""
    rng = _rng(30)
    for L, H_kv, D, t, itemsize in ((30, 3, 64, 1, 4), (30, 3, 64, 1000, 2), (32, 8, 128, 4096, 1),
                                    tuple(int(n) for n in rng.integers(1, 100, 4)) + (int(rng.choice([1, 2, 4])),)):
        want, got = kv_cache_bytes(L, H_kv, D, t, itemsize), fn(L, H_kv, D, t, itemsize)
        assert got == want, (f"for L={L}, H_kv={H_kv}, D={D}, {t} tokens of {itemsize} bytes your count is "
                             f"{_too(got, want)}")
    return _done("grouped-query KV cache size")


def _tiles(scores, block):
    """The scores one tile at a time, each written over the last in one buffer — as in a GPU's on-chip memory: a
    tile kept past its turn holds another tile's values by then."""
    buffer = np.empty(block)
    for start in range(0, len(scores), block):
        n = min(block, len(scores) - start)
        buffer[:n] = scores[start:start + n]
        yield buffer[:n]


@exercise("10_serving")
def check_online_softmax(fn):
    """fn(tiles) -> (m, l): the scores arrive as an iterator of tiles (1-D arrays); return the largest score m and
    l = Σ exp(s − m) over all of them, keeping only m and l between tiles — then softmax(s) = exp(s − m) / l."""
    rng = _rng(11)
    cases = [(10, 3, 0.0), (64, 16, 0.0), (7, 7, 0.0), (33, 50, 0.0), (40, 8, 300.0), (40, 8, -300.0),
             (int(rng.integers(2, 200)), int(rng.integers(1, 30)), float(rng.uniform(-100, 100)))]
    for n, block, climb in cases:  # climb: each tile's scores that much above the last's (exp overflows past 709)
        scores = rng.standard_normal(n) * 5 + rng.uniform(-100, 100) + climb * (np.arange(n) // block)
        got = fn(_tiles(scores, block))
        assert len(got) == 2, "return (m, l)"
        m, ell = (float(a) for a in got)
        assert m == scores.max(), f"{n} scores in tiles of {block}: m must be the largest score seen"
        assert np.isfinite(ell) and ell >= 1, (f"{n} scores in tiles of {block}, each tile higher than the last: l is "
                                               f"{ell} (subtract the running maximum, and rescale l when it grows)")
        _close(np.exp(scores - m) / ell, softmax(scores), f"exp(s - m) / l for {n} scores in tiles of {block}",
               atol=1e-12)
    return _done("online softmax")


@exercise("10_serving")
def check_paged_blocks(fn):
    """fn(lengths, block) -> (blocks needed, token slots wasted) of a paged KV cache."""
    rng = _rng(12)
    for _ in range(5):
        lengths, block = [int(n) for n in rng.integers(1, 200, rng.integers(1, 9))], int(rng.choice([4, 16, 32]))
        blocks = sum(-(-n // block) for n in lengths)
        got = tuple(int(x) for x in fn(lengths, block))
        want = (blocks, blocks * block - sum(lengths))
        assert got == want, f"wrong for {len(lengths)} sequences in blocks of {block}"
    return _done("paged cache blocks")


@exercise("01_embeddings_and_positional_encoding")
def check_position_table_params(fn):
    """fn(max_len, d_model) -> the number of parameters of a learned position table."""
    rng = _rng(14)
    for max_len, d in [(1024, 768)] + [tuple(int(n) for n in rng.integers(1, 300, 2)) for _ in range(4)]:
        want, got = count_params({"table": np.zeros((max_len, d))}), fn(max_len, d)
        assert got == want, f"for max_len={max_len}, d_model={d} your count is {_too(got, want)}"
    return _done("learned position table size")


@exercise("02_scaled_dot_product_attention")
def check_score_std(fn):
    """fn(d_k) -> the standard deviation of q·k for q, k of d_k independent zero-mean unit-variance entries;
    compared with a simulation of min(200,000, 4,000,000 / d_k) dot products for several d_k (within 3%: at
    least 4.7 standard errors of the simulated standard deviation, whatever d_k)."""
    rng = _rng(15)
    for d_k in (1, 4, 64, int(rng.integers(5, 300))):
        n = min(200_000, 4_000_000 // d_k)
        q, k = rng.standard_normal((n, d_k)), rng.standard_normal((n, d_k))
        measured, got = float(np.std((q * k).sum(-1))), float(fn(d_k))
        assert abs(got - measured) <= 0.03 * measured, (
            f"for d_k={d_k} your standard deviation is {_too(got, measured)} (start from the variance of one "
            "term q_i k_i, then of a sum of independent terms)")
    return _done("standard deviation of q·k")


@exercise("05_encoder_decoder_forward")
def check_causal_dependence(fn):
    """fn(T, t) -> the sorted target positions whose logits change when the target token at position t
    changes, for a length-T target; checked by running a random encoder-decoder."""
    rng = _rng(16)
    model = Transformer(d_model=16, nhead=2, num_layers=1, num_classes=12, d_ff=16, max_len=16,
                        dtype="float64", seed=3)
    for _ in range(5):
        T, S = int(rng.integers(2, 10)), int(rng.integers(1, 6))
        t = int(rng.integers(0, T))
        src, tgt = rng.integers(0, 12, (1, S)), rng.integers(0, 12, (1, T))
        tgt2 = tgt.copy()
        tgt2[0, t] = (tgt[0, t] + 1) % 12
        diff = np.abs(model(src, tgt) - model(src, tgt2)).max(-1)[0]
        want = [int(i) for i in np.flatnonzero(diff > 1e-12)]
        got = sorted(int(i) for i in fn(T, t))
        assert got == want, (f"changing the target at position {t} of {T}: your list is wrong (which positions "
                             "may attend to position t under the causal mask?)")
    return _done("what the causal mask lets each position see")


def _topk_beams(scores, log_probs, k):
    cand = scores[:, None] + log_probs  # (K, V)
    flat = np.argsort(-cand, axis=None, kind="stable")[:k]
    return flat // cand.shape[1], flat % cand.shape[1], cand.reshape(-1)[flat]


@exercise("06_decoding_and_kv_cache")
def check_beam_step(fn):
    """fn(scores (K,), log_probs (K, V), K) -> (parents (K,), tokens (K,), new_scores (K,)): one step of beam
    search, the K best extensions of the K beams, best first (score = beam score + log-probability)."""
    rng = _rng(17)
    for K, V in ((1, 5), (3, 7), (4, 20), (int(rng.integers(2, 6)), int(rng.integers(8, 40)))):
        scores = np.sort(-rng.exponential(3.0, K))[::-1].copy()
        if K > 2:
            scores[-1] = -np.inf  # a dead beam (the first step has one live beam) must never be extended
        log_probs = log_softmax(rng.standard_normal((K, V)) * 2)
        got = [np.asarray(a) for a in fn(scores, log_probs, K)]
        want = _topk_beams(scores, log_probs, K)
        assert len(got) == 3, "return (parents, tokens, new_scores)"
        for name, g, w in zip(("parents", "tokens", "new_scores"), got, want):
            assert g.shape == w.shape, f"{name}: expected shape {w.shape}, got {g.shape}"
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1]), (
            f"K={K}, V={V}: wrong (parent, token) pairs (rank all K·V extensions together, best first)")
        _close(got[2], want[2], f"K={K}, V={V}: new scores", atol=1e-12)
    return _done("one beam-search step")


@exercise("06_decoding_and_kv_cache")
def check_kv_cache_step(fn):
    """fn(K (H, t, D), V (H, t, D), q, k, v (H, 1, D)) -> (out (H, 1, D), K' (H, t+1, D), V' (H, t+1, D)):
    append the new key and value to the cache and attend the new query over all t + 1 of them.  Run from an
    empty cache token by token, each output must equal the row of full causal attention."""
    rng = _rng(18)
    for H, T, D in ((1, 4, 3), (2, 7, 4), (int(rng.integers(1, 5)), int(rng.integers(2, 12)), 8)):
        q, k, v = (rng.standard_normal((H, T, D)) for _ in range(3))
        want, _ = scaled_dot_product_attention(q, k, v, causal_mask(T))  # (H, T, D)
        K, V = np.zeros((H, 0, D)), np.zeros((H, 0, D))
        for t in range(T):
            out, K, V = fn(K, V, q[:, t:t + 1], k[:, t:t + 1], v[:, t:t + 1])
            _close(K, k[:, :t + 1], f"H={H}, D={D}: the key cache after token {t}", atol=0)
            _close(V, v[:, :t + 1], f"H={H}, D={D}: the value cache after token {t}", atol=0)
            _close(out, want[:, t:t + 1], f"H={H}, D={D}: output for token {t}", atol=1e-12)
    return _done("one KV-cache decoding step")


@exercise("08_training_in_numpy")
def check_training_gradient(fn):
    """fn(W (C, V), b (V,), x (N, C), y (N,), eps) -> (dW, db): the gradient of the label-smoothed mean
    cross-entropy of the logits x W + b (one training step's backward of an output layer)."""
    rng = _rng(19)
    for N, C, V, eps in ((1, 2, 3, 0.0), (5, 4, 6, 0.1), (int(rng.integers(2, 20)), 7, 11, rng.uniform(0, .5))):
        W, b, x = rng.standard_normal((C, V)), rng.standard_normal(V), rng.standard_normal((N, C))
        y = rng.integers(0, V, N)
        _, cache = cross_entropy_forward(x @ W + b, y, label_smoothing=eps)
        dz = cross_entropy_backward(cache)  # (N, V)
        dW, db = fn(W, b, x, y, eps)
        _close(dW, x.T @ dz, f"N={N}, V={V}, eps={eps:.2f}: dW", atol=1e-12)
        _close(db, dz.sum(0), f"N={N}, V={V}, eps={eps:.2f}: db", atol=1e-12)
    return _done("one training step's gradient")


def _unscaled(params, cfg):
    """W^Q, b^Q multiplied by sqrt(D) in every attention block: the scores become q·k, unscaled."""
    def fix(block):
        return block | {"w_q": block["w_q"] * np.sqrt(cfg.d_head), "b_q": block["b_q"] * np.sqrt(cfg.d_head)}
    out = tree_map(lambda a: a, params)
    for stack in ("encoder", "decoder"):
        for layer in out.get(stack, {}).get("layers", []):
            for name in ("self_attn", "cross_attn"):
                if name in layer:
                    layer[name] = fix(layer[name])
    return out


@exercise("08_training_in_numpy")
def check_ablations(fn):
    """fn(task, params, examples) -> {"full", "no_scaling", "no_positions"}: exact-match accuracy of the shipped
    model as it is, with the 1/sqrt(d_k) of every attention removed, and with no positional encoding; checked
    on the shipped reverse model against this checker's own measurement."""
    task, params, _, _ = load_trained("reverse")
    examples = [task.test[i] for i in _rng(20).choice(len(task.test), 60, replace=False)]
    no_pe = dataclasses.replace(task, config=dataclasses.replace(task.config, positional_encoding=False))
    want = {"full": evaluate(task, params, examples)["accuracy"],
            "no_scaling": evaluate(task, _unscaled(params, task.config), examples)["accuracy"],
            "no_positions": evaluate(no_pe, params, examples)["accuracy"]}
    got = fn(task, params, examples)
    assert set(got) == set(want), f"return a dict with the keys {sorted(want)}"
    for key in want:
        assert abs(float(got[key]) - want[key]) < 1e-9, f"{key}: your accuracy is {_too(float(got[key]), want[key])}"
    return _done("ablations measured")


@exercise("11_making_it_smaller")
def check_absmax_quantize(fn):
    """fn(w (C_in, C_out), bits) -> (q (C_in, C_out) integers, s (C_out,)): symmetric absmax quantization with one
    scale per output channel (column), as the chapter derives it; checked on random shapes and bit widths."""
    rng = _rng(21)
    for C_in, C_out, bits in ((4, 3, 8), (16, 5, 4), (int(rng.integers(2, 40)), int(rng.integers(1, 9)), 6),
                              (int(rng.integers(2, 40)), int(rng.integers(2, 9)), int(rng.integers(2, 9)))):
        w = rng.standard_normal((C_in, C_out)) * rng.uniform(0.1, 5, C_out)
        q, s = (np.asarray(a) for a in fn(w, bits))
        want = quantize_symmetric(w, bits, axis=0)
        assert q.shape == w.shape and s.shape == (C_out,), f"q must be {w.shape} and s ({C_out},)"
        _close(s, want.scale.reshape(-1), f"{bits}-bit scales of a {C_in}x{C_out} matrix", atol=1e-6)
        _close(q * s, dequantize(want, np.float64), f"{bits}-bit s·q of a {C_in}x{C_out} matrix", atol=1e-5)
    return _done("absmax quantization per output channel")


@exercise("11_making_it_smaller")
def check_int4_pack(fn):
    """fn(q int8 (n,) in [-8, 7], n even) -> uint8 (n/2,): two values a byte, q[2i] in the low nibble."""
    rng = _rng(22)
    for n in (2, 8, 2 * int(rng.integers(5, 50))):
        q = rng.integers(-8, 8, n).astype(np.int8)
        got = np.asarray(fn(q))
        assert got.dtype == np.uint8, f"the bytes must be uint8, got {got.dtype}"
        assert np.array_equal(got, pack_int4(q)), f"{n} values: wrong bytes (low nibble first; negative values?)"
    return _done("int4 packing")


@exercise("12_cost_at_scale")
def check_decode_time(fn):
    """fn(n_params, bytes_per_weight, batch, peak_flops, bandwidth) -> the roofline time of one decode step of a
    batch, counting the weights only (the chapter's model); checked on two chips and random sizes."""
    rng = _rng(23)
    for N, b, B in ((135e6, 4, 1), (7e9, 2, 64), (float(rng.integers(1, 100)) * 1e9, 1, int(rng.integers(1, 512)))):
        for hw in (cost_model.HARDWARE["h200"], cost_model.HARDWARE["tpu-v4"]):
            want = max(2 * N * B / hw.peak_flops, N * b / hw.bandwidth)
            got = float(fn(N, b, B, hw.peak_flops, hw.bandwidth))
            assert abs(got - want) <= 1e-9 * want, (f"N={N:.3g}, {b}-byte weights, batch {B} on {hw.name}: your "
                                                    f"time is {_too(got, want)}")
    return _done("decode-step roofline")


@exercise("12_cost_at_scale")
def check_ring_all_reduce_bytes(fn):
    """fn(nbytes, n) -> bytes each of n chips sends in a ring all-reduce of an nbytes array, checked against a
    simulated mesh that counts them."""
    rng = _rng(24)
    for n in (1, 2, 3, 8, int(rng.integers(4, 33))):
        a = rng.standard_normal(int(rng.integers(4, 64)))
        mesh = Mesh(n)
        mesh.all_reduce([a] * n)
        got = float(fn(a.nbytes, n))
        assert abs(got - mesh.sent["all-reduce"]) < 1e-9, f"{n} chips, {a.nbytes} bytes: your count is " \
                                                          f"{_too(got, mesh.sent['all-reduce'])}"
    return _done("ring all-reduce bytes")
