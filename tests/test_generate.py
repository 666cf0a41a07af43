"""Generation: the KV cache equals the plain path, batching equals one prompt at a time, and the decoding
rules (greedy, sampling, beam search) do what their definitions say."""

import itertools

import numpy as np
import pytest

import transformer_np as tn
from transformer_np import decoding as g

PROMPTS = [[1, 2, 3], [4, 5], [6, 7, 8, 9, 1, 3]]  # ragged on purpose


def lm(dtype="float64", **kw):
    return tn.DecoderLM(tn.TransformerConfig.lm_tiny(dtype=dtype, **kw), seed=0)


def seq2seq(dtype="float64", **kw):
    return tn.Transformer.from_config(tn.TransformerConfig.tiny(dtype=dtype, **kw), seed=0)


def session(model, prompts, use_cache=True):
    if isinstance(model, tn.DecoderLM):
        return g.LMSession(model, prompts, use_cache=use_cache)
    return g.Seq2SeqSession(model, prompts, bos_id=1, use_cache=use_cache)


def logits_per_step(model, prompts, use_cache, steps=8):
    """Greedy decoding, recording the next-token logits the session offers at every step."""
    seen = []
    s = session(model, prompts, use_cache)
    tokens = g.greedy(s, steps, on_step=lambda step, sess, toks: seen.append(sess.next_logits.copy()))
    return tokens, seen


MODELS = {"decoder-only": lm, "encoder-decoder": seq2seq}
TOL = {"float64": 1e-12, "float32": 1e-5}


@pytest.mark.parametrize("kind", list(MODELS))
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("prompts", [PROMPTS[:1], PROMPTS], ids=["single", "ragged-batch"])
def test_kv_cache_decode_matches_full_forward(kind, dtype, prompts):
    model = MODELS[kind](dtype)
    tok_cached, cached = logits_per_step(model, prompts, use_cache=True)
    tok_plain, plain = logits_per_step(model, prompts, use_cache=False)
    assert tok_cached == tok_plain
    assert len(cached) == len(plain) == 8
    for a, b in zip(cached, plain):
        np.testing.assert_allclose(a, b, rtol=0, atol=TOL[dtype])


@pytest.mark.parametrize("kind", list(MODELS))
@pytest.mark.parametrize("use_cache", [True, False])
def test_ragged_batch_gives_each_prompt_its_own_tokens(kind, use_cache):
    model = MODELS[kind]("float32")
    batched, batched_logits = logits_per_step(model, PROMPTS, use_cache)
    for b, p in enumerate(PROMPTS):
        alone, alone_logits = logits_per_step(model, [p], use_cache)
        assert batched[b] == alone[0]
        for step in range(len(alone_logits)):
            np.testing.assert_allclose(batched_logits[step][b], alone_logits[step][0], atol=1e-5)


def test_cached_step_logits_equal_the_models_own_forward_on_the_whole_sequence():
    model = lm()
    s = g.LMSession(model, [PROMPTS[2]])
    for t in (3, 4, 5):
        s.append(np.array([t]))
        full = model(s.tokens)  # (1, len, V)
        np.testing.assert_allclose(s.next_logits[0], full[0, -1], atol=1e-12)


def test_generation_does_not_mutate_the_callers_prompts():
    prompts = [list(p) for p in PROMPTS]
    arrays = [np.array(p) for p in PROMPTS]
    g.greedy(g.LMSession(lm(), prompts), 4)
    g.greedy(g.LMSession(lm(), arrays), 4)
    assert prompts == PROMPTS and all(np.array_equal(a, p) for a, p in zip(arrays, PROMPTS))


def test_generation_stops_at_eos_and_keeps_it():
    model = lm()
    first = g.greedy(g.LMSession(model, [PROMPTS[0]]), 6)[0]
    eos = first[2]  # make the third generated token the EOS
    out = g.greedy(g.LMSession(model, [PROMPTS[0]]), 6, eos_id=eos)[0]
    assert out == first[: first.index(eos) + 1]


def test_kv_cache_size_is_two_tensors_per_layer():
    model = lm("float32")
    s = g.LMSession(model, PROMPTS)
    g.greedy(s, 5)
    cfg = model.config
    B, t = len(PROMPTS), s.length
    want = 2 * cfg.n_decoder_layers * B * cfg.n_heads * t * cfg.d_head * 4  # k and v, float32
    assert s.cache_bytes() == want
    assert g.LMSession(model, PROMPTS, use_cache=False).cache_bytes() == 0


# --- the decoding rules ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", list(MODELS))
def test_beam_width_one_equals_greedy(kind):
    model = MODELS[kind]()
    want = g.greedy(session(model, PROMPTS[:1]), 6)[0]
    (tokens, _, _), = g.beam_search(session(model, PROMPTS[:1]), 1, 6)
    assert tokens == want


@pytest.mark.parametrize("kwargs", [dict(top_k=1), dict(temperature=1e-9), dict(top_p=1e-9)])
def test_degenerate_sampling_equals_greedy(kwargs):
    model = lm()
    want = g.greedy(g.LMSession(model, PROMPTS), 6)
    got = g.sample(g.LMSession(model, PROMPTS), 6, rng=np.random.default_rng(0), **kwargs)
    assert got == want


def test_top_p_one_and_top_k_vocab_leave_the_distribution_unchanged():
    logits = np.random.default_rng(0).standard_normal((4, 11))
    want = tn.softmax(logits)
    np.testing.assert_allclose(g.next_token_probs(logits, top_p=1.0), want, atol=1e-15)
    np.testing.assert_allclose(g.next_token_probs(logits, top_k=11), want, atol=1e-15)
    np.testing.assert_allclose(g.next_token_probs(logits, temperature=2.0), tn.softmax(logits / 2), atol=1e-15)


def test_top_k_and_top_p_keep_the_right_tokens():
    logits = np.log(np.array([[0.5, 0.05, 0.3, 0.15]]))
    p = g.next_token_probs(logits, top_k=2)
    np.testing.assert_allclose(p, [[0.5 / 0.8, 0, 0.3 / 0.8, 0]])
    p = g.next_token_probs(logits, top_p=0.85)  # 0.5 + 0.3 = 0.8 < 0.85, so 0.15 joins
    np.testing.assert_allclose(p, [[0.5 / 0.95, 0, 0.3 / 0.95, 0.15 / 0.95]])


def test_sampled_token_frequencies_match_the_softmax_probabilities():
    from scipy.stats import chisquare

    model = lm()
    n = 4000
    probs = tn.softmax(g.LMSession(model, [PROMPTS[0]]).next_logits[0] / 1.5)
    draws = g.sample(g.LMSession(model, [PROMPTS[0]] * n), 1, rng=np.random.default_rng(7), temperature=1.5)
    counts = np.bincount([d[0] for d in draws], minlength=len(probs))
    keep = probs * n >= 5  # chi-square needs expected counts of at least ~5: lump the rare tokens
    observed, expected = counts[keep], probs[keep] * n
    if (~keep).any():
        observed, expected = np.append(observed, counts[~keep].sum()), np.append(expected, probs[~keep].sum() * n)
    assert len(observed) >= 3
    assert chisquare(observed, expected).pvalue > 1e-3


def test_sampling_is_reproducible_from_the_seed():
    model = lm()
    a = g.sample(g.LMSession(model, PROMPTS), 6, rng=np.random.default_rng(3), top_p=0.9)
    b = g.sample(g.LMSession(model, PROMPTS), 6, rng=np.random.default_rng(3), top_p=0.9)
    assert a == b


def test_beam_search_finds_the_best_sequence_when_the_beam_covers_every_prefix():
    model = tn.DecoderLM(tn.TransformerConfig.lm_tiny(vocab_size=4, dtype="float64"), seed=1)
    prompt, L, V = [1, 2], 3, 4

    def log_prob(seq):
        ids = np.array([prompt + list(seq)])
        logp = tn.log_softmax(model(ids)[0])  # (len, V)
        return sum(logp[len(prompt) - 1 + i, tok] for i, tok in enumerate(seq))

    best = max(itertools.product(range(V), repeat=L), key=log_prob)
    hyps = g.beam_search(g.LMSession(model, [prompt]), V ** (L - 1), L)
    assert hyps[0][0] == list(best)
    np.testing.assert_allclose(hyps[0][2], log_prob(best), atol=1e-10)
    assert [h[1] for h in hyps] == sorted((h[1] for h in hyps), reverse=True)  # n-best, best first


def test_beam_search_length_penalty_favours_longer_finished_hypotheses():
    assert g.length_penalty(10, 1.0) > g.length_penalty(2, 1.0) and g.length_penalty(7, 0.0) == 1.0
    model = lm()
    plain = g.beam_search(g.LMSession(model, [PROMPTS[0]]), 4, 6, eos_id=9)
    for _tokens, score, logp in plain:
        assert score == logp  # alpha = 0
    for tokens, score, logp in g.beam_search(g.LMSession(model, [PROMPTS[0]]), 4, 6, eos_id=9, alpha=0.6):
        np.testing.assert_allclose(score, logp / g.length_penalty(len(tokens), 0.6))


# --- bad input -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("prompts, error, message", [
    ([], ValueError, "prompts must be a non-empty list"),
    ([[]], ValueError, r"prompts\[0\] must be a non-empty 1-D sequence"),
    ([[1, 2], [3, -1]], ValueError, r"prompts\[1\] ids must lie in \[0, 11\), got values in \[-1, 3\]"),
    ([[1, 11]], ValueError, r"ids must lie in \[0, 11\)"),
    ([[1.0, 2.0]], TypeError, "must hold integer token ids"),
    ([list(range(10)) * 7], ValueError, "more than the model's context max_len=64"),
])
def test_bad_prompts_are_rejected(prompts, error, message):
    with pytest.raises(error, match=message):
        g.LMSession(lm(), prompts)


@pytest.mark.parametrize("kwargs, message", [
    (dict(temperature=0), "temperature must be a finite number > 0, got 0"),
    (dict(temperature=-1.0), "temperature must be"),
    (dict(top_p=0.0), r"top_p must be a finite number in \(0, 1\], got 0.0"),
    (dict(top_p=1.5), "top_p must be a finite number in"),
    (dict(top_k=0), "top_k must be a positive integer"),
])
def test_bad_sampling_settings_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        g.sample(g.LMSession(lm(), PROMPTS), 3, rng=np.random.default_rng(0), **kwargs)


def test_bad_run_settings_are_rejected():
    with pytest.raises(ValueError, match="beam_width must be a positive integer, got 0"):
        g.beam_search(g.LMSession(lm(), PROMPTS[:1]), 0, 3)
    with pytest.raises(ValueError, match="beam_search takes one prompt"):
        g.beam_search(g.LMSession(lm(), PROMPTS), 2, 3)
    with pytest.raises(ValueError, match="max_new_tokens must be a positive integer"):
        g.greedy(g.LMSession(lm(), PROMPTS), 0)
    with pytest.raises(ValueError, match=r"max_new_tokens=70 does not fit: the context has room for 59"):
        g.greedy(g.LMSession(lm(), PROMPTS), 70)
    with pytest.raises(ValueError, match=r"eos_id must be an integer in \[0, 10\]"):
        g.greedy(g.LMSession(lm(), PROMPTS), 3, eos_id=11)
    with pytest.raises(TypeError, match="rng must be a numpy.random.Generator"):
        g.sample(g.LMSession(lm(), PROMPTS), 3, rng=0)


def test_cross_attention_keys_are_computed_once_and_reused(monkeypatch):
    import transformer_np.model.layers as model_module

    s = g.Seq2SeqSession(seq2seq(), [[3, 4, 5]], bos_id=1)
    first = [layer.cross for layer in s.cache]
    calls = []
    real = model_module.project_kv
    monkeypatch.setattr(model_module, "project_kv", lambda *a, **k: calls.append(a[0].shape) or real(*a, **k))
    g.greedy(s, 4)
    assert all(layer.cross is kv for layer, kv in zip(s.cache, first))  # the very same arrays
    assert all(shape[1] == 1 for shape in calls)  # only the new token's self-attention keys were projected
