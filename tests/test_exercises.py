"""The exercise checkers accept a right answer and reject the lazy and the plausible wrong ones — a constant, an
answer right for one configuration, one ε, one base or one itemsize only, a −1e9 mask fill, right padding assumed,
a softmax that never rescales — without printing the expected value (#33: at least three wrong answers each)."""

import dataclasses

import numpy as np
import pytest

import transformer_np as tn
from transformer_np.teaching import exercises


def kv_bytes(cfg, B, t, itemsize):
    return 2 * cfg.n_decoder_layers * B * (cfg.n_kv_heads or cfg.n_heads) * t * cfg.d_head * itemsize


def test_kv_cache_checker_rejects_a_hard_coded_itemsize():
    assert exercises.check_kv_cache_bytes(kv_bytes)
    with pytest.raises(AssertionError) as e:
        exercises.check_kv_cache_bytes(lambda cfg, B, t, itemsize: kv_bytes(cfg, B, t, 4))
    big = tn.TransformerConfig(d_model=768, n_heads=12, n_encoder_layers=0, n_decoder_layers=12,
                               architecture="decoder-only")
    want = kv_bytes(big, 1, 1024, 2)  # the case the hard-coded 4 gets wrong
    assert "too high" in str(e.value) and str(want) not in str(e.value) and f"{want:,}" not in str(e.value)


def test_parameter_count_checker_rejects_a_constant_and_hides_the_answer():
    cfg = tn.TransformerConfig.paper_base()
    right = lambda c: tn.count_params(tn.model.param_shapes(c))  # noqa: E731
    assert exercises.check_parameter_count(right, cfg)
    constant = right(cfg)
    with pytest.raises(AssertionError) as e:
        exercises.check_parameter_count(lambda c: constant, cfg)
    assert f"{constant:,}" not in str(e.value) and str(constant) not in str(e.value)


def test_gqa_cache_checker_rejects_a_hard_coded_itemsize():
    right = lambda L, H, D, t, b: 2 * L * H * D * t * b  # noqa: E731
    assert exercises.check_gqa_cache_bytes(right)
    with pytest.raises(AssertionError, match="too"):
        exercises.check_gqa_cache_bytes(lambda L, H, D, t, b: right(L, H, D, t, 4))


def test_ranking_checker_does_not_print_the_expected_order():
    with pytest.raises(AssertionError) as e:
        exercises.check_ranking(lambda q, corpus: np.arange(len(corpus)))
    assert "[" not in str(e.value)


def test_checkers_called_with_none_point_to_the_solutions_notebook(capsys):
    assert exercises.check_beam_step(None) is False
    assert "notebooks/solutions/06_decoding_and_kv_cache_solutions.ipynb" in capsys.readouterr().out


def test_position_table_checker_rejects_the_gpt2_constant():
    assert exercises.check_position_table_params(lambda n, d: n * d)
    with pytest.raises(AssertionError, match="too") as e:
        exercises.check_position_table_params(lambda n, d: 1024 * 768)
    assert "786432" not in str(e.value) and "786,432" not in str(e.value)


def test_score_std_checker_measures_and_rejects_the_variance_and_a_constant():
    assert exercises.check_score_std(lambda d: d**0.5)
    for wrong in (lambda d: d, lambda d: 8.0, lambda d: 1.0):  # the variance; d_k = 64's answer; scaled
        with pytest.raises(AssertionError, match="too"):
            exercises.check_score_std(wrong)


def test_causal_dependence_checker_rejects_one_config_answers():
    assert exercises.check_causal_dependence(lambda T, t: range(t, T))
    for wrong in (lambda T, t: [2, 3], lambda T, t: range(t + 1, T), lambda T, t: range(T), lambda T, t: range(t + 1)):
        with pytest.raises(AssertionError, match="your list is wrong"):
            exercises.check_causal_dependence(wrong)


def beam_step(scores, log_probs, K):
    cand = scores[:, None] + log_probs
    best = np.argsort(-cand, axis=None)[:K]
    parents, tokens = np.divmod(best, cand.shape[1])
    return parents, tokens, cand[parents, tokens]


def test_beam_step_checker_rejects_per_beam_top_k_and_ignoring_scores():
    assert exercises.check_beam_step(beam_step)

    def per_beam(scores, log_probs, K):  # each beam's best token: the common mistake
        tokens = log_probs.argmax(-1)
        return np.arange(K), tokens, scores + log_probs[np.arange(K), tokens]

    def no_scores(scores, log_probs, K):  # ranks the extensions by the new log-probability only
        p, t, _ = beam_step(np.zeros_like(scores), log_probs, K)
        return p, t, scores[p] + log_probs[p, t]

    for wrong in (per_beam, no_scores):
        with pytest.raises(AssertionError, match="wrong"):
            exercises.check_beam_step(wrong)


def cache_step(K, V, q, k, v):
    K, V = np.concatenate([K, k], 1), np.concatenate([V, v], 1)
    w = tn.core.softmax(q @ K.transpose(0, 2, 1) / np.sqrt(q.shape[-1]))
    return w @ V, K, V


def test_kv_cache_step_checker_rejects_unscaled_and_uncached_steps():
    assert exercises.check_kv_cache_step(cache_step)

    def unscaled(K, V, q, k, v):
        return cache_step(K, V, q * np.sqrt(q.shape[-1]), k, v)

    def forgets(K, V, q, k, v):  # attends to the new token only: the cache never grows
        return cache_step(K[:, :0], V[:, :0], q, k, v)

    for wrong, message in ((unscaled, "output"), (forgets, "key cache")):
        with pytest.raises(AssertionError, match=message):
            exercises.check_kv_cache_step(wrong)


def output_grads(W, b, x, y, eps):
    z = x @ W + b
    p = tn.core.softmax(z)
    q = np.full(z.shape, eps / z.shape[1])
    q[np.arange(len(y)), y] += 1 - eps
    dz = (p - q) / len(y)
    return x.T @ dz, dz.sum(0)


def test_training_gradient_checker_rejects_ignoring_smoothing_or_the_mean():
    assert exercises.check_training_gradient(output_grads)
    no_smoothing = lambda W, b, x, y, eps: output_grads(W, b, x, y, 0.0)  # noqa: E731
    summed = lambda W, b, x, y, eps: tuple(g * len(y) for g in output_grads(W, b, x, y, eps))  # noqa: E731
    for wrong in (no_smoothing, summed):
        with pytest.raises(AssertionError, match="dW"):
            exercises.check_training_gradient(wrong)


def test_ablation_checker_rejects_made_up_accuracies():
    with pytest.raises(AssertionError, match="keys"):
        exercises.check_ablations(lambda task, params, examples: {"full": 1.0})
    with pytest.raises(AssertionError, match="no_scaling: your accuracy is too high"):  # the model not ablated
        exercises.check_ablations(lambda task, params, examples: dict.fromkeys(("full", "no_scaling",
                                                                                "no_positions"), 1.0))


def test_positional_encoding_off_removes_every_position_signal():
    """With positional_encoding=False the encoder is permutation-equivariant: the ablation does what it says."""
    cfg = tn.TransformerConfig.tiny(dtype="float64", positional_encoding=False)
    params = tn.init_params(cfg, seed=1)
    src = np.array([[3, 4, 5, 6, 7]])
    perm = np.array([4, 2, 0, 1, 3])
    memory = tn.model.encode(params, src, cfg)[0]
    np.testing.assert_allclose(tn.model.encode(params, src[:, perm], cfg)[0], memory[:, perm], atol=1e-12)
    with_pe = tn.TransformerConfig.tiny(dtype="float64")
    shuffled, memory = tn.model.encode(params, src[:, perm], with_pe)[0], tn.model.encode(params, src, with_pe)[0]
    assert not np.allclose(shuffled, memory[:, perm])


CHECKERS = sorted(name for name in dir(exercises) if name.startswith("check_"))


@pytest.mark.parametrize("name", CHECKERS)
def test_every_checker_rejects_a_constant_answer(name):
    """A function that returns the same number whatever it is asked never passes (check_parameter_count also
    takes the configuration the learner was asked about)."""
    checker = getattr(exercises, name)
    extra = (tn.TransformerConfig.paper_base(),) if name == "check_parameter_count" else ()
    for constant in (0, 1, 786432):
        with pytest.raises((AssertionError, TypeError, ValueError)):
            checker(lambda *args, c=constant: c, *extra)


# --- every checker: its reference answer passes, at least three plausible wrong answers do not -----------------
def attention(q, k, v, mask):
    return tn.scaled_dot_product_attention(q, k, v, mask)


def attention_minus_1e9(q, k, v, mask):  # the common fill: a fully masked query spreads its weight evenly
    s = np.where(mask, q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1]).astype(q.dtype), -1e9)
    w = tn.core.softmax(s)
    return w @ v, w


def attention_unscaled(q, k, v, mask):
    return tn.scaled_dot_product_attention(q * np.sqrt(q.shape[-1]).astype(q.dtype), k, v, mask)


def attention_float64(q, k, v, mask):
    return tuple(a.astype(np.float64) for a in attention(q.astype(np.float64), k, v, mask))


def pe_swapped(n, d):
    pe = tn.core.sinusoidal_positional_encoding(n, d, dtype=np.float64)
    return np.stack([pe[:, 1::2], pe[:, 0::2]], -1).reshape(n, d)  # cos on the even columns


def pe_i_over_d(n, d):
    pos, i = np.arange(n)[:, None], np.arange(d // 2)
    a = pos / 10000 ** (i / d)
    return np.stack([np.sin(a), np.cos(a)], -1).reshape(n, d)


def pe_base_1000(n, d):
    pos, i2 = np.arange(n)[:, None], np.arange(0, d, 2)
    a = pos / 1000 ** (i2 / d)
    return np.stack([np.sin(a), np.cos(a)], -1).reshape(n, d)


def rotation(k, d):
    M = np.zeros((d, d))
    for i in range(d // 2):
        c, s = np.cos(k * 10000 ** (-2 * i / d)), np.sin(k * 10000 ** (-2 * i / d))
        M[2 * i:2 * i + 2, 2 * i:2 * i + 2] = [[c, s], [-s, c]]
    return M


def layer_norm_ddof1(x, g, b, eps):
    return g * (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, ddof=1, keepdims=True) + eps) + b


def layer_norm_eps_outside(x, g, b, eps):
    return g * (x - x.mean(-1, keepdims=True)) / (x.std(-1, keepdims=True) + eps) + b


def param_count(c):
    return tn.count_params(tn.model.param_shapes(c))


def param_count_no_gqa(c):  # K and V counted as C × C, whatever n_kv_heads says
    return param_count(dataclasses.replace(c, n_kv_heads=None))


def param_count_untied(c):
    return param_count(dataclasses.replace(c, tie_embeddings=False))


def cache_bytes(c, B, t, b):
    return 2 * c.n_decoder_layers * B * (c.n_kv_heads or c.n_heads) * t * c.d_head * b


def pool(x, mask):
    m = mask[..., None]
    return (x * m).sum(1) / m.sum(1)


def pool_first_n(x, mask):  # assumes right padding: the first n tokens
    return np.stack([x[b, :int(mask[b].sum())].mean(0) for b in range(len(x))])


def rms(x, g, eps):
    return g * x / np.sqrt(np.mean(x * x, -1, keepdims=True) + eps)


def rope_pairs(x, pos, base):
    return tn.core.embeddings.rope(x, pos, base, "pairs")


def online_softmax(tiles):
    m, ell = -np.inf, 0.0
    for tile in tiles:
        m_new = max(m, float(tile.max()))
        ell = ell * np.exp(m - m_new) + np.exp(tile - m_new).sum()
        m = m_new
    return m, ell


def online_softmax_no_max(tiles):  # sums exp(s) and subtracts nothing: overflows
    ell, m = 0.0, -np.inf
    for tile in tiles:
        ell += np.exp(tile).sum()
        m = max(m, float(tile.max()))
    return m, ell


def online_softmax_first_max(tiles):  # the first tile's maximum only: no rescaling when it grows
    m, ell, first = -np.inf, 0.0, None
    for tile in tiles:
        first = float(tile.max()) if first is None else first
        ell += np.exp(tile - first).sum()
        m = max(m, float(tile.max()))
    return first, ell


def online_softmax_kept_tiles(tiles):  # keeps the tiles (views of one buffer) and reduces them at the end
    kept = list(tiles)
    s = np.concatenate(kept)
    return s.max(), np.exp(s - s.max()).sum()


def absmax(w, bits):
    qt = tn.efficient.quantize.quantize_symmetric(w, bits, axis=0)
    return tn.efficient.quantize.dequantize(qt, np.float64) / qt.scale.reshape(-1), qt.scale.reshape(-1)


def absmax_per_tensor(w, bits):
    s = np.abs(w).max() / (2 ** (bits - 1) - 1)
    return np.round(w / s), np.full(w.shape[1], s)


def absmax_full_range(w, bits):  # divides by 2^bits - 1: the unsigned range
    s = np.abs(w).max(0) / (2**bits - 1)
    return np.round(w / s), s


def absmax_floor(w, bits):
    s = np.abs(w).max(0) / (2 ** (bits - 1) - 1)
    return np.floor(w / s), s


def pack(q):
    u = q.astype(np.uint8) & 0x0F
    return u[0::2] | (u[1::2] << 4)


def decode_time(N, b, B, peak, bw):
    return max(2 * N * B / peak, N * b / bw)


CASES = {  # checker: (its reference answer, [plausible wrong answers], extra arguments)
    "check_positional_encoding": (lambda n, d: tn.core.sinusoidal_positional_encoding(n, d, dtype=np.float64),
                                  [pe_swapped, pe_i_over_d, pe_base_1000], ()),
    "check_rotation": (rotation, [lambda k, d: rotation(k, 8), lambda k, d: rotation(k, d).T,
                                  lambda k, d: rotation(1, d)], ()),
    "check_causal_mask": (lambda T: tn.causal_mask(T), [lambda T: np.tril(np.ones((T, T)), -1).astype(bool),
                                                       lambda T: np.triu(np.ones((T, T))).astype(bool),
                                                       lambda T: np.tril(np.ones((T, T)))], ()),
    "check_attention": (attention, [attention_minus_1e9, attention_unscaled, attention_float64], ()),
    "check_split_heads": (tn.core.attention.split_heads,
                          [lambda x, H: x.reshape(x.shape[0], H, x.shape[1], -1),
                           lambda x, H: x.reshape(x.shape[0], x.shape[1], -1, H).transpose(0, 3, 1, 2),
                           lambda x, H: tn.core.attention.split_heads(x, 4)], ()),
    "check_mha_param_count": (lambda C: 4 * C * C + 4 * C, [lambda C: 4 * C * C, lambda C: 3 * C * C + 3 * C,
                                                            lambda C: 4 * C * C + C], ()),
    "check_layer_norm": (lambda x, g, b, eps: tn.core.layer_norm(x, g, b, eps),
                         [lambda x, g, b, eps: tn.core.layer_norm(x, g, b, 1e-5), layer_norm_ddof1,
                          layer_norm_eps_outside], ()),
    "check_gelu": (tn.core.gelu, [lambda x: 0.5 * x * (1 + np.tanh(0.8 * (x + 0.044715 * x**3))),
                                  lambda x: x / (1 + np.exp(-1.702 * x)), lambda x: np.maximum(x, 0)], ()),
    "check_parameter_count": (param_count, [param_count_no_gqa, param_count_untied,
                                            lambda c: param_count(dataclasses.replace(c, final_norm=True))],
                              (tn.TransformerConfig.paper_base(),)),
    "check_kv_cache_bytes": (cache_bytes, [lambda c, B, t, b: 2 * c.n_decoder_layers * B * c.n_heads * t * c.d_head * b,
                                           lambda c, B, t, b: cache_bytes(c, B, t, b) // 2,
                                           lambda c, B, t, b: cache_bytes(c, B, t, 4)], ()),
    "check_mean_pooling": (pool, [pool_first_n, lambda x, m: x.mean(1), lambda x, m: (x * m[..., None]).sum(1) /
                                  x.shape[1]], ()),
    "check_rms_norm": (rms, [lambda x, g, eps: rms(x, g, 1e-5),
                             lambda x, g, eps: g * x / (np.sqrt(np.mean(x * x, -1, keepdims=True)) + eps),
                             lambda x, g, eps: rms(x - x.mean(-1, keepdims=True), g, eps)], ()),
    "check_rope": (rope_pairs, [lambda x, p, base: rope_pairs(x, p, 10000.0),
                                lambda x, p, base: tn.core.embeddings.rope(x, p, base, "half"),
                                lambda x, p, base: rope_pairs(x, -p, base)], ()),
    "check_online_softmax": (online_softmax, [online_softmax_no_max, online_softmax_first_max,
                                              online_softmax_kept_tiles], ()),
    "check_absmax_quantize": (absmax, [absmax_per_tensor, absmax_full_range, absmax_floor], ()),
    "check_int4_pack": (pack, [lambda q: (q.astype(np.uint8) & 0x0F)[1::2] | ((q.astype(np.uint8) & 0x0F)[0::2] << 4),
                               lambda q: (q[0::2] + 16 * q[1::2]).astype(np.uint8),
                               lambda q: pack(q).astype(np.int8)], ()),
    "check_decode_time": (decode_time, [lambda N, b, B, p, w: 2 * N * B / p + N * b / w,
                                        lambda N, b, B, p, w: max(2 * N / p, N * b / w),
                                        lambda N, b, B, p, w: max(N * B / p, N * b / w)], ()),
    "check_ring_all_reduce_bytes": (lambda nbytes, n: 2 * (n - 1) / n * nbytes,
                                    [lambda nbytes, n: 2 * nbytes, lambda nbytes, n: (n - 1) / n * nbytes,
                                     lambda nbytes, n: 2 * (n - 1) * nbytes], ()),
    "check_top_k": (lambda p, k: tn.decoding.search.next_token_probs(np.log(p), top_k=k),
                    [lambda p, k: np.where(p >= np.sort(p, -1)[:, -k:][:, :1], p, 0),  # not renormalised
                     lambda p, k: tn.decoding.search.next_token_probs(np.log(p), top_k=min(k + 1, p.shape[-1])),
                     lambda p, k: p], ()),
    "check_softmax_backward": (lambda dy, y: y * (dy - (dy * y).sum(-1, keepdims=True)),
                               [lambda dy, y: y * (1 - y) * dy, lambda dy, y: dy * y,
                                lambda dy, y: (y * (dy - (dy * y).sum(-1, keepdims=True))).astype(np.float64)], ()),
    "check_schedule": (lambda s, d, w: d**-0.5 * min(s**-0.5, s * w**-1.5),
                       [lambda s, d, w: min(s**-0.5, s * w**-1.5), lambda s, d, w: d**-0.5 * s**-0.5,
                        lambda s, d, w: d**-0.5 * max(s**-0.5, s * w**-1.5)], ()),
    "check_paged_blocks": (lambda L, b: (sum(-(-n // b) for n in L), sum(-(-n // b) for n in L) * b - sum(L)),
                           [lambda L, b: (sum(n // b for n in L), 0), lambda L, b: (sum(n // b + 1 for n in L), 0),
                            lambda L, b: (-(-sum(L) // b), -(-sum(L) // b) * b - sum(L))], ()),
    "check_gqa_cache_bytes": (lambda L, H, D, t, b: 2 * L * H * D * t * b,
                              [lambda L, H, D, t, b: L * H * D * t * b, lambda L, H, D, t, b: 2 * L * H * D * t * 4,
                               lambda L, H, D, t, b: 2 * L * H * D * b], ()),
    "check_ranking": (lambda q, c: np.argsort(-(c / np.linalg.norm(c, axis=1, keepdims=True)) @ q),
                      [lambda q, c: np.argsort(-(c @ q)), lambda q, c: np.argsort(c @ q / np.linalg.norm(c, axis=1)),
                       lambda q, c: np.argsort(np.linalg.norm(c - q, axis=1))], ()),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_checker_accepts_its_answer_and_rejects_plausible_wrong_ones(name, capsys):
    right, wrongs, extra = CASES[name]
    checker = getattr(exercises, name)
    assert checker(right, *extra) is True
    assert len(wrongs) >= 3
    for wrong in wrongs:
        with pytest.raises(AssertionError):  # the checker's own message, not a crash inside the answer
            checker(wrong, *extra)


def test_checker_docstrings_do_not_state_the_formula_asked_for():
    for name in ("check_decode_time", "check_ring_all_reduce_bytes", "check_absmax_quantize"):
        doc = getattr(exercises, name).__doc__
        assert "max(2" not in doc and "(n−1)" not in doc and "2^(bits" not in doc and "/ bandwidth" not in doc


def test_every_checker_has_wrong_answers_or_its_own_test():
    own = {"check_score_std", "check_causal_dependence", "check_beam_step", "check_kv_cache_step",
           "check_training_gradient", "check_ablations", "check_position_table_params"}
    assert set(CHECKERS) == set(CASES) | own


def _fitted(reference):
    """An answer fitted to the draws it has seen: right on every input it was shown, wrong on any other."""
    seen = {}

    def key(args):
        return repr([(a.shape, a.dtype.str, a.tobytes()) if isinstance(a, np.ndarray) else a for a in args])

    def learn(*args):
        seen[key(args)] = out = reference(*args)
        return out

    def fitted(*args):
        out = seen.get(key(args))
        return out if out is not None else np.zeros_like(reference(*args)) + 0.5
    return learn, fitted


@pytest.mark.parametrize("name, reference", [
    ("check_causal_mask", lambda T: np.tril(np.ones((T, T), bool))),
    ("check_gelu", lambda x: tn.core.nn.gelu(x)),
    ("check_position_table_params", lambda n, d: n * d),
    ("check_rms_norm", None),
])
def test_fresh_draws_reject_an_answer_fitted_to_the_visible_draws(name, reference):
    """The grader's hidden tests (exercises.fresh_draws) draw inputs the notebook never showed."""
    if reference is None:
        reference = lambda x, g, eps: tn.core.nn.rms_norm(x, g, eps)  # noqa: E731
    check = getattr(exercises, name)
    learn, fitted = _fitted(reference)
    assert check(learn) and check(fitted)  # the visible draws: the fitted answer passes
    with exercises.fresh_draws(1), pytest.raises(AssertionError):
        check(fitted)
    with exercises.fresh_draws(1):
        assert check(reference)


def test_fresh_draws_restores_the_visible_draws_and_refuses_a_bad_set():
    with pytest.raises(ValueError, match="n must be an int >= 1, got 0"):
        with exercises.fresh_draws(0):
            pass
    with pytest.raises(RuntimeError), exercises.fresh_draws(2):
        raise RuntimeError
    learn, fitted = _fitted(lambda T: np.tril(np.ones((T, T), bool)))
    assert exercises.check_causal_mask(learn) and exercises.check_causal_mask(fitted)
