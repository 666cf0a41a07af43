"""Checkers for the notebooks' exercises.

Each ``check_*`` takes the learner's answer (usually a function), compares it with the package on random
inputs, and raises AssertionError with a hint when they differ; when the answer is right it prints one line
saying so (the learner's feedback in the notebook: this module's only output) and returns True.
"""

from __future__ import annotations

import numpy as np

from ..core.attention import scaled_dot_product_attention, split_heads
from ..core.embeddings import rope, sinusoidal_positional_encoding
from ..core.masks import causal_mask
from ..core.nn import gelu, layer_norm, rms_norm, softmax, softmax_backward
from ..core.tree import count_params
from ..decoding.search import next_token_probs
from ..model.config import TransformerConfig
from ..model.params import param_shapes
from ..training.optim import noam_lr


def _close(got, want, what, atol=1e-10):
    got = np.asarray(got)
    assert got.shape == np.shape(want), f"{what}: expected shape {np.shape(want)}, got {got.shape}"
    err = float(np.max(np.abs(got - want))) if got.size else 0.0
    assert err <= atol, f"{what}: largest difference {err:.3g} (allowed {atol:g})"


def _done(name):
    print(f"✓ {name}: correct")
    return True


def check_positional_encoding(fn):
    """fn(max_len, d_model) -> the (max_len, d_model) sin-cos table, float64."""
    for max_len, d in ((10, 4), (50, 16), (7, 6)):
        _close(fn(max_len, d), sinusoidal_positional_encoding(max_len, d, dtype=np.float64),
               f"PE for max_len={max_len}, d_model={d}")
    return _done("positional encoding")


def check_rotation(fn):
    """fn(k, d_model) -> the (d, d) matrix M_k with PE[pos + k] = M_k @ PE[pos] for every pos."""
    pe = sinusoidal_positional_encoding(60, 8, dtype=np.float64)
    for k in (1, 3, 10):
        m = np.asarray(fn(k, 8))
        assert m.shape == (8, 8), f"M_{k} must be (8, 8), got {m.shape}"
        _close(pe[:-k] @ m.T, pe[k:], f"M_{k} @ PE[pos] vs PE[pos+{k}]")
    return _done("rotation M_k")


def check_causal_mask(fn):
    """fn(T) -> (T, T) bool, True where query t may attend to key s."""
    for T in (1, 4, 9):
        m = np.asarray(fn(T))
        assert m.dtype == bool, f"the mask must be boolean, got {m.dtype}"
        assert np.array_equal(m, causal_mask(T)), f"causal mask for T={T} is wrong:\n{m.astype(int)}"
    return _done("causal mask")


def check_attention(fn):
    """fn(q, k, v, mask) -> (out, weights), as scaled_dot_product_attention."""
    rng = np.random.default_rng(1)
    q, k, v = rng.standard_normal((2, 4, 3)), rng.standard_normal((2, 6, 3)), rng.standard_normal((2, 6, 5))
    mask = rng.random((4, 6)) > 0.3
    mask[:, 0] = True
    out, w = fn(q, k, v, mask)
    want_out, want_w = scaled_dot_product_attention(q, k, v, mask)
    _close(w, want_w, "weights")
    _close(out, want_out, "output")
    return _done("scaled dot-product attention")


def check_split_heads(fn):
    """fn(x (B, T, C), H) -> (B, H, T, D)."""
    x = np.random.default_rng(2).standard_normal((2, 3, 12))
    for H in (1, 3, 4):
        _close(fn(x, H), split_heads(x, H), f"split into {H} heads", atol=0)
    return _done("split heads")


def check_mha_param_count(fn):
    """fn(C) -> number of parameters of one multi-head attention block (W^Q, W^K, W^V, W^O and biases)."""
    for C in (8, 512, 768):
        assert fn(C) == 4 * C * C + 4 * C, f"for C={C} you gave {fn(C)}; count every W (C x C) and bias (C)"
    return _done("multi-head attention parameter count")


def check_layer_norm(fn):
    """fn(x, gamma, beta, eps) -> layer norm over the last axis."""
    rng = np.random.default_rng(3)
    x, g, b = rng.standard_normal((4, 7)) * 3 + 1, rng.standard_normal(7), rng.standard_normal(7)
    _close(fn(x, g, b, 1e-5), layer_norm(x, g, b, 1e-5), "layer norm (biased variance, eps inside the root)")
    return _done("layer norm")


def check_gelu(fn):
    """fn(x) -> exact GELU x * Phi(x)."""
    x = np.linspace(-5, 5, 101)
    _close(fn(x), gelu(x), "GELU", atol=1e-7)
    return _done("GELU")


def check_parameter_count(fn, cfg):
    """fn(cfg) -> the model's parameter count, as count_params of its params tree; checked on cfg and on random
    other configurations (so that a number copied from somewhere does not pass)."""
    rng = np.random.default_rng(13)
    configs = [cfg] + [TransformerConfig(d_model=int(H * rng.choice([4, 8])), n_heads=int(H),
                                         n_encoder_layers=int(rng.integers(1, 4)),
                                         n_decoder_layers=int(rng.integers(1, 4)), d_ff=int(rng.integers(8, 64)),
                                         vocab_size=int(rng.integers(10, 100)), final_norm=bool(rng.integers(2)))
                       for H in rng.choice([1, 2, 4], size=4)]
    for i, c in enumerate(configs):
        want, got = count_params(param_shapes(c)), fn(c)
        assert got == want, (f"configuration {i} (C={c.d_model}, layers {c.n_encoder_layers}+{c.n_decoder_layers}, "
                             f"F={c.d_ff}, V={c.vocab_size}, final_norm={c.final_norm}): your count is "
                             f"{'too high' if got > want else 'too low'}")
    return _done(f"parameter count ({count_params(param_shapes(cfg)):,} for the configuration asked)")


def check_top_k(fn):
    """fn(probs (B, V), k) -> probabilities restricted to the k largest per row, renormalised."""
    rng = np.random.default_rng(4)
    logits = rng.standard_normal((3, 9))
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    for k in (1, 3, 9):
        _close(fn(probs, k), next_token_probs(logits, top_k=k), f"top-k with k={k}", atol=1e-12)
    return _done("top-k filtering")


def check_kv_cache_bytes(fn):
    """fn(cfg, batch, tokens, itemsize) -> bytes of a decoder-only model's KV cache."""
    cases = ((TransformerConfig.lm_tiny(), 3, 10, 4),
             (TransformerConfig(d_model=768, n_heads=12, n_encoder_layers=0, n_decoder_layers=12,
                                architecture="decoder-only"), 1, 1024, 2),
             (TransformerConfig.lm_tiny(n_decoder_layers=3), 2, 7, 8))
    for cfg, B, t, itemsize in cases:
        want = 2 * cfg.n_decoder_layers * B * cfg.n_heads * t * cfg.d_head * itemsize
        got = fn(cfg, B, t, itemsize)
        assert got == want, (f"for L={cfg.n_decoder_layers}, H={cfg.n_heads}, D={cfg.d_head}, {B} x {t} tokens of "
                             f"{itemsize} bytes your count is {'too high' if got > want else 'too low'}")
    return _done("KV cache size")


def check_mean_pooling(fn):
    """fn(x (B, T, C), mask (B, T) of 0/1) -> (B, C) mean of the unmasked token vectors."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 5, 4))
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]])
    want = np.stack([x[b, : mask[b].sum()].mean(0) for b in range(3)])
    _close(fn(x, mask), want, "mean pooling (padding must not count)")
    return _done("mean pooling")


def check_ranking(fn):
    """fn(query (C,), corpus (N, C)) -> indices of corpus, most cosine-similar first."""
    rng = np.random.default_rng(6)
    corpus, query = rng.standard_normal((8, 5)) * rng.uniform(0.1, 10, (8, 1)), rng.standard_normal(5)
    cos = corpus @ query / (np.linalg.norm(corpus, axis=1) * np.linalg.norm(query))
    got = [int(i) for i in fn(query, corpus)]
    assert got == list(np.argsort(-cos)), "the order is not by cosine similarity (normalise first?)"
    return _done("cosine ranking")


def check_softmax_backward(fn):
    """fn(dy, y) -> dx for y = softmax(x)."""
    rng = np.random.default_rng(8)
    x, dy = rng.standard_normal((4, 6)), rng.standard_normal((4, 6))
    y = softmax(x)
    _close(fn(dy, y), softmax_backward(dy, y), "softmax backward", atol=1e-12)
    return _done("softmax backward")


def check_schedule(fn):
    """fn(step, d_model, warmup) -> the paper's learning rate."""
    for step, d, w in ((1, 512, 4000), (4000, 512, 4000), (10000, 64, 400), (50, 128, 100)):
        _close(fn(step, d, w), noam_lr(step, d, w), f"lrate at step {step}", atol=1e-15)
    return _done("learning-rate schedule")


def check_rms_norm(fn):
    """fn(x (..., C), gamma (C,), eps) -> RMSNorm(x)."""
    rng = np.random.default_rng(9)
    x, gamma = rng.standard_normal((3, 7)), rng.standard_normal(7)
    _close(fn(x, gamma, 1e-5), rms_norm(x, gamma, 1e-5), "RMSNorm", atol=1e-12)
    return _done("RMSNorm")


def check_rope(fn):
    """fn(x (T, D), positions (T,), base) -> x with each pair (x_2i, x_2i+1) rotated by pos · base^(-2i/D)."""
    rng = np.random.default_rng(10)
    x, pos = rng.standard_normal((5, 8)), np.array([0, 1, 4, 9, 30])
    _close(fn(x, pos, 100.0), rope(x, pos, 100.0, "pairs"), "RoPE (pairs layout)", atol=1e-12)
    return _done("rotary position embedding")


def check_gqa_cache_bytes(fn):
    """fn(n_layers, n_kv_heads, d_head, tokens, itemsize) -> bytes of a grouped-query model's KV cache."""
    for L, H_kv, D, t, itemsize in ((30, 3, 64, 1, 4), (30, 3, 64, 1000, 2), (32, 8, 128, 4096, 1)):
        want, got = 2 * L * H_kv * D * t * itemsize, fn(L, H_kv, D, t, itemsize)
        assert got == want, (f"for L={L}, H_kv={H_kv}, D={D}, {t} tokens of {itemsize} bytes your count is "
                             f"{'too high' if got > want else 'too low'}")
    return _done("grouped-query KV cache size")


def check_online_softmax(fn):
    """fn(scores (N,), block) -> softmax(scores), computed one tile at a time."""
    rng = np.random.default_rng(11)
    for n, block in ((10, 3), (64, 16), (7, 7), (33, 50)):
        scores = rng.standard_normal(n) * 5 + rng.uniform(-100, 100)
        _close(fn(scores, block), softmax(scores), f"online softmax of {n} scores in tiles of {block}", atol=1e-12)
    return _done("online softmax")


def check_paged_blocks(fn):
    """fn(lengths, block) -> (blocks needed, token slots wasted) of a paged KV cache."""
    rng = np.random.default_rng(12)
    for _ in range(5):
        lengths, block = [int(n) for n in rng.integers(1, 200, rng.integers(1, 9))], int(rng.choice([4, 16, 32]))
        blocks = sum(-(-n // block) for n in lengths)
        got = tuple(int(x) for x in fn(lengths, block))
        want = (blocks, blocks * block - sum(lengths))
        assert got == want, f"wrong for {len(lengths)} sequences in blocks of {block}"
    return _done("paged cache blocks")
