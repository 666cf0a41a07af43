"""Checkers for the notebooks' exercises.

Each ``check_*`` takes the learner's answer (usually a function), compares it with the package on random
inputs, several configurations and dtypes, and raises AssertionError with a hint when they differ — never with
the expected value; when the answer is right it prints one line saying so (the learner's feedback in the
notebook: this module's only output) and returns True.  Given None (not attempted) it prints where the
reference solution is (``notebooks/solutions/``) and returns False.
"""

from __future__ import annotations

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


def _done(name):
    print(f"✓ {name}: correct")
    return True


@exercise("01_embeddings_and_positional_encoding")
def check_positional_encoding(fn):
    """fn(max_len, d_model) -> the (max_len, d_model) sin-cos table, float64."""
    for max_len, d in ((10, 4), (50, 16), (7, 6)):
        _close(fn(max_len, d), sinusoidal_positional_encoding(max_len, d, dtype=np.float64),
               f"PE for max_len={max_len}, d_model={d}")
    return _done("positional encoding")


@exercise("01_embeddings_and_positional_encoding")
def check_rotation(fn):
    """fn(k, d_model) -> the (d, d) matrix M_k with PE[pos + k] = M_k @ PE[pos] for every pos."""
    pe = sinusoidal_positional_encoding(60, 8, dtype=np.float64)
    for k in (1, 3, 10):
        m = np.asarray(fn(k, 8))
        assert m.shape == (8, 8), f"M_{k} must be (8, 8), got {m.shape}"
        _close(pe[:-k] @ m.T, pe[k:], f"M_{k} @ PE[pos] vs PE[pos+{k}]")
    return _done("rotation M_k")


@exercise("02_scaled_dot_product_attention")
def check_causal_mask(fn):
    """fn(T) -> (T, T) bool, True where query t may attend to key s."""
    for T in (1, 4, 9):
        m = np.asarray(fn(T))
        assert m.dtype == bool, f"the mask must be boolean, got {m.dtype}"
        assert np.array_equal(m, causal_mask(T)), f"causal mask for T={T} is wrong:\n{m.astype(int)}"
    return _done("causal mask")


@exercise("02_scaled_dot_product_attention")
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


@exercise("03_multi_head_attention")
def check_split_heads(fn):
    """fn(x (B, T, C), H) -> (B, H, T, D)."""
    x = np.random.default_rng(2).standard_normal((2, 3, 12))
    for H in (1, 3, 4):
        _close(fn(x, H), split_heads(x, H), f"split into {H} heads", atol=0)
    return _done("split heads")


@exercise("03_multi_head_attention")
def check_mha_param_count(fn):
    """fn(C) -> number of parameters of one multi-head attention block (W^Q, W^K, W^V, W^O and biases)."""
    for C in (8, 512, 768):
        assert fn(C) == 4 * C * C + 4 * C, f"for C={C} you gave {fn(C)}; count every W (C x C) and bias (C)"
    return _done("multi-head attention parameter count")


@exercise("04_residual_layernorm_ffn")
def check_layer_norm(fn):
    """fn(x, gamma, beta, eps) -> layer norm over the last axis."""
    rng = np.random.default_rng(3)
    x, g, b = rng.standard_normal((4, 7)) * 3 + 1, rng.standard_normal(7), rng.standard_normal(7)
    _close(fn(x, g, b, 1e-5), layer_norm(x, g, b, 1e-5), "layer norm (biased variance, eps inside the root)")
    return _done("layer norm")


@exercise("04_residual_layernorm_ffn")
def check_gelu(fn):
    """fn(x) -> exact GELU x * Phi(x)."""
    x = np.linspace(-5, 5, 101)
    _close(fn(x), gelu(x), "GELU", atol=1e-7)
    return _done("GELU")


@exercise("05_encoder_decoder_forward")
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
                             f"{_too(got, want)}")
    return _done(f"parameter count ({count_params(param_shapes(cfg)):,} for the configuration asked)")


@exercise("06_decoding_and_kv_cache")
def check_top_k(fn):
    """fn(probs (B, V), k) -> probabilities restricted to the k largest per row, renormalised."""
    rng = np.random.default_rng(4)
    logits = rng.standard_normal((3, 9))
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    for k in (1, 3, 9):
        _close(fn(probs, k), next_token_probs(logits, top_k=k), f"top-k with k={k}", atol=1e-12)
    return _done("top-k filtering")


@exercise("06_decoding_and_kv_cache")
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
                             f"{itemsize} bytes your count is {_too(got, want)}")
    return _done("KV cache size")


@exercise("07_pretrained_minilm")
def check_mean_pooling(fn):
    """fn(x (B, T, C), mask (B, T) of 0/1) -> (B, C) mean of the unmasked token vectors."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 5, 4))
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]])
    want = np.stack([x[b, : mask[b].sum()].mean(0) for b in range(3)])
    _close(fn(x, mask), want, "mean pooling (padding must not count)")
    return _done("mean pooling")


@exercise("07_pretrained_minilm")
def check_ranking(fn):
    """fn(query (C,), corpus (N, C)) -> indices of corpus, most cosine-similar first."""
    rng = np.random.default_rng(6)
    corpus, query = rng.standard_normal((8, 5)) * rng.uniform(0.1, 10, (8, 1)), rng.standard_normal(5)
    cos = corpus @ query / (np.linalg.norm(corpus, axis=1) * np.linalg.norm(query))
    got = [int(i) for i in fn(query, corpus)]
    assert got == list(np.argsort(-cos)), "the order is not by cosine similarity (normalise first?)"
    return _done("cosine ranking")


@exercise("08_training_in_numpy")
def check_softmax_backward(fn):
    """fn(dy, y) -> dx for y = softmax(x)."""
    rng = np.random.default_rng(8)
    x, dy = rng.standard_normal((4, 6)), rng.standard_normal((4, 6))
    y = softmax(x)
    _close(fn(dy, y), softmax_backward(dy, y), "softmax backward", atol=1e-12)
    return _done("softmax backward")


@exercise("08_training_in_numpy")
def check_schedule(fn):
    """fn(step, d_model, warmup) -> the paper's learning rate."""
    for step, d, w in ((1, 512, 4000), (4000, 512, 4000), (10000, 64, 400), (50, 128, 100)):
        _close(fn(step, d, w), noam_lr(step, d, w), f"lrate at step {step}", atol=1e-15)
    return _done("learning-rate schedule")


@exercise("09_modern_llm")
def check_rms_norm(fn):
    """fn(x (..., C), gamma (C,), eps) -> RMSNorm(x)."""
    rng = np.random.default_rng(9)
    x, gamma = rng.standard_normal((3, 7)), rng.standard_normal(7)
    _close(fn(x, gamma, 1e-5), rms_norm(x, gamma, 1e-5), "RMSNorm", atol=1e-12)
    return _done("RMSNorm")


@exercise("09_modern_llm")
def check_rope(fn):
    """fn(x (T, D), positions (T,), base) -> x with each pair (x_2i, x_2i+1) rotated by pos · base^(-2i/D)."""
    rng = np.random.default_rng(10)
    x, pos = rng.standard_normal((5, 8)), np.array([0, 1, 4, 9, 30])
    _close(fn(x, pos, 100.0), rope(x, pos, 100.0, "pairs"), "RoPE (pairs layout)", atol=1e-12)
    return _done("rotary position embedding")


@exercise("09_modern_llm")
def check_gqa_cache_bytes(fn):
    """fn(n_layers, n_kv_heads, d_head, tokens, itemsize) -> bytes of a grouped-query model's KV cache."""
    for L, H_kv, D, t, itemsize in ((30, 3, 64, 1, 4), (30, 3, 64, 1000, 2), (32, 8, 128, 4096, 1)):
        want, got = kv_cache_bytes(L, H_kv, D, t, itemsize), fn(L, H_kv, D, t, itemsize)
        assert got == want, (f"for L={L}, H_kv={H_kv}, D={D}, {t} tokens of {itemsize} bytes your count is "
                             f"{_too(got, want)}")
    return _done("grouped-query KV cache size")


@exercise("10_serving")
def check_online_softmax(fn):
    """fn(scores (N,), block) -> softmax(scores), computed one tile at a time."""
    rng = np.random.default_rng(11)
    for n, block in ((10, 3), (64, 16), (7, 7), (33, 50)):
        scores = rng.standard_normal(n) * 5 + rng.uniform(-100, 100)
        _close(fn(scores, block), softmax(scores), f"online softmax of {n} scores in tiles of {block}", atol=1e-12)
    return _done("online softmax")


@exercise("10_serving")
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


@exercise("01_embeddings_and_positional_encoding")
def check_position_table_params(fn):
    """fn(max_len, d_model) -> the number of parameters of a learned position table."""
    rng = np.random.default_rng(14)
    for max_len, d in [(1024, 768)] + [tuple(int(n) for n in rng.integers(1, 300, 2)) for _ in range(4)]:
        want, got = count_params({"table": np.zeros((max_len, d))}), fn(max_len, d)
        assert got == want, f"for max_len={max_len}, d_model={d} your count is {_too(got, want)}"
    return _done("learned position table size")


@exercise("02_scaled_dot_product_attention")
def check_score_std(fn):
    """fn(d_k) -> the standard deviation of q·k for q, k of d_k independent zero-mean unit-variance entries;
    compared with a simulation of 200,000 dot products for several d_k (within 3%)."""
    rng = np.random.default_rng(15)
    for d_k in (1, 4, 64, int(rng.integers(5, 300))):
        q, k = rng.standard_normal((200_000, d_k)), rng.standard_normal((200_000, d_k))
        measured, got = float(np.std((q * k).sum(-1))), float(fn(d_k))
        assert abs(got - measured) <= 0.03 * measured, (
            f"for d_k={d_k} your standard deviation is {_too(got, measured)} (a sum of d_k independent terms of "
            "variance 1 has variance d_k)")
    return _done("standard deviation of q·k")


@exercise("05_encoder_decoder_forward")
def check_causal_dependence(fn):
    """fn(T, t) -> the sorted target positions whose logits change when the target token at position t
    changes, for a length-T target; checked by running a random encoder-decoder."""
    rng = np.random.default_rng(16)
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
    rng = np.random.default_rng(17)
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
    rng = np.random.default_rng(18)
    for H, T, D in ((1, 4, 3), (2, 7, 4), (int(rng.integers(1, 5)), int(rng.integers(2, 12)), 8)):
        q, k, v = (rng.standard_normal((H, T, D)) for _ in range(3))
        want, _ = scaled_dot_product_attention(q, k, v, causal_mask(T))  # (H, T, D)
        K, V = np.zeros((H, 0, D)), np.zeros((H, 0, D))
        for t in range(T):
            out, K, V = fn(K, V, q[:, t:t + 1], k[:, t:t + 1], v[:, t:t + 1])
            assert np.shape(K) == (H, t + 1, D), f"the key cache after token {t} must be {(H, t + 1, D)}"
            _close(out, want[:, t:t + 1], f"H={H}, D={D}: output for token {t}", atol=1e-12)
    return _done("one KV-cache decoding step")


@exercise("08_training_in_numpy")
def check_training_gradient(fn):
    """fn(W (C, V), b (V,), x (N, C), y (N,), eps) -> (dW, db): the gradient of the label-smoothed mean
    cross-entropy of the logits x W + b (one training step's backward of an output layer)."""
    rng = np.random.default_rng(19)
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
    examples = [task.test[i] for i in np.random.default_rng(20).choice(len(task.test), 60, replace=False)]
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
    scale per output channel (column), s = max|w[:, j]| / (2^(bits-1) - 1), q = round(w / s)."""
    rng = np.random.default_rng(21)
    for C_in, C_out, bits in ((4, 3, 8), (16, 5, 4), (int(rng.integers(2, 40)), int(rng.integers(1, 9)), 6)):
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
    rng = np.random.default_rng(22)
    for n in (2, 8, 2 * int(rng.integers(5, 50))):
        q = rng.integers(-8, 8, n).astype(np.int8)
        got = np.asarray(fn(q))
        assert got.dtype == np.uint8, f"the bytes must be uint8, got {got.dtype}"
        assert np.array_equal(got, pack_int4(q)), f"{n} values: wrong bytes (low nibble first; negative values?)"
    return _done("int4 packing")


@exercise("12_cost_at_scale")
def check_decode_time(fn):
    """fn(n_params, bytes_per_weight, batch, peak_flops, bandwidth) -> the roofline time of one decode step,
    weights only: max(2·N·B / peak, N·bytes / bandwidth)."""
    rng = np.random.default_rng(23)
    for N, b, B in ((135e6, 4, 1), (7e9, 2, 64), (float(rng.integers(1, 100)) * 1e9, 1, int(rng.integers(1, 512)))):
        for hw in (cost_model.HARDWARE["h200"], cost_model.HARDWARE["tpu-v4"]):
            want = max(2 * N * B / hw.peak_flops, N * b / hw.bandwidth)
            got = float(fn(N, b, B, hw.peak_flops, hw.bandwidth))
            assert abs(got - want) <= 1e-9 * want, (f"N={N:.3g}, {b}-byte weights, batch {B} on {hw.name}: your "
                                                    f"time is {_too(got, want)}")
    return _done("decode-step roofline")


@exercise("12_cost_at_scale")
def check_ring_all_reduce_bytes(fn):
    """fn(nbytes, n) -> bytes each of n chips sends in a ring all-reduce of an nbytes array: 2·(n−1)/n·nbytes,
    checked against a simulated mesh that counts them."""
    rng = np.random.default_rng(24)
    for n in (1, 2, 3, 8):
        a = rng.standard_normal(int(rng.integers(4, 64)))
        mesh = Mesh(n)
        mesh.all_reduce([a] * n)
        got = float(fn(a.nbytes, n))
        assert abs(got - mesh.sent["all-reduce"]) < 1e-9, f"{n} chips, {a.nbytes} bytes: your count is " \
                                                          f"{_too(got, mesh.sent['all-reduce'])}"
    return _done("ring all-reduce bytes")
