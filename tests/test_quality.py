"""The quality measures (efficient.quality): evaluation windows with and without overlap, the KL divergence from a
reference model against a direct computation, and standard errors that shrink as 1/√n."""

import math

import numpy as np
import pytest
from helpers import tiny_llama

import transformer_np as tn
from transformer_np.core.nn import log_softmax
from transformer_np.efficient import quality
from transformer_np.pretrained.llama import LlamaModel, llama_logits


def scored(n, window, stride):
    return [t for _, stop, first in quality.windows(n, window, stride) for t in range(first, stop)]


@pytest.mark.parametrize("n, window, stride", [(100, 16, 16), (100, 16, 8), (100, 16, 5), (17, 16, 4), (2, 16, 1)])
def test_windows_score_each_token_once_with_the_context_the_stride_leaves(n, window, stride):
    got = scored(n, window, stride)
    assert len(got) == len(set(got))  # each token once
    if stride < window:
        assert got == list(range(1, n))  # every token but the first
        for start, stop, first in quality.windows(n, window, stride)[1:]:
            assert first - start >= window - stride and stop - start <= window
    else:  # no overlap: each window's first token is context only
        assert got == [t for t in range(1, n) if t % window]


def test_windows_refuse_a_stride_that_would_skip_tokens():
    with pytest.raises(ValueError, match="stride=20 must be at most window=16"):
        quality.windows(100, 16, 20)
    with pytest.raises(ValueError, match="stride"):
        quality.windows(100, 16, 0)


def model_pair(rng):
    params, cfg = tiny_llama(rng, vocab_size=40)
    model = LlamaModel(params, cfg, tokenizer=None)
    noisy = tn.core.tree_map(lambda a: a * (1 + 0.05 * rng.standard_normal(a.shape)) if a.ndim == 2 else a, params)
    return model, model.with_params(noisy), cfg


def test_kl_of_a_model_against_itself_is_zero_and_top1_agrees(rng):
    model, _, cfg = model_pair(rng)
    ids = rng.integers(0, cfg.vocab_size, 50)
    ticks = []
    s = quality.token_scores(model, ids, window=16, stride=8, reference=model, progress=ticks.append)
    assert ticks == [1] * len(quality.windows(50, 16, 8))  # one progress tick a window
    assert np.all(s["kl"] == 0) and np.all(s["top1"] == 1) and np.array_equal(s["nll"], s["ref_nll"])
    twin = model.with_params(model.params)  # another object, the same weights: two passes, the same numbers
    s2 = quality.token_scores(twin, ids, window=16, stride=8, reference=model)
    np.testing.assert_array_equal(s2["kl"], 0.0)


def test_reference_logits_kept_once_give_the_scores_of_the_reference_model_bit_for_bit(rng):
    model, noisy, cfg = model_pair(rng)
    ids = rng.integers(0, cfg.vocab_size, 50)
    kept = quality.ReferenceLogits(model, ids, window=16, stride=8)
    want = quality.token_scores(noisy, ids, window=16, stride=8, reference=model)
    got = quality.token_scores(noisy, ids, window=16, stride=8, reference=kept)
    assert want.keys() == got.keys() and want["kl"].mean() > 0
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])
    with pytest.raises(ValueError, match="window=16, stride=8 on 50 tokens"):
        quality.token_scores(noisy, ids, window=16, stride=4, reference=kept)  # other windows
    with pytest.raises(ValueError, match="other token ids"):
        quality.token_scores(noisy, (ids + 1) % cfg.vocab_size, window=16, stride=8, reference=kept)


def test_record_with_fills_recorders_from_any_run_and_leaves_the_tree_as_it_was(rng):
    model, _, cfg = model_pair(rng)
    ids = rng.integers(0, cfg.vocab_size, 20)
    by_decoder = quality.record_activations(model, ids, window=20)
    by_run = quality.record_with(model.params, lambda p: model.with_params(p).step(ids[None]))
    assert by_run.keys() == by_decoder.keys() and all(r.rows == 20 for r in by_run.values())
    for path in by_run:
        np.testing.assert_allclose(by_run[path].sumsq, by_decoder[path].sumsq, rtol=1e-6)
    assert all(isinstance(w, np.ndarray) for w in tn.core.tree.flatten(model.params).values())


def test_kl_and_nll_equal_a_direct_computation_over_one_window(rng):
    model, noisy, cfg = model_pair(rng)
    ids = rng.integers(0, cfg.vocab_size, 30)
    s = quality.token_scores(noisy, ids, window=64, reference=model)
    p = log_softmax(np.asarray(llama_logits(model.params, ids[None], cfg)[0][0, :-1], np.float64))
    q = log_softmax(np.asarray(llama_logits(noisy.params, ids[None], cfg)[0][0, :-1], np.float64))
    want_kl = [sum(math.exp(a) * (a - b) for a, b in zip(p[t], q[t])) for t in range(len(ids) - 1)]
    np.testing.assert_allclose(s["kl"], want_kl, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(s["nll"], -q[np.arange(29), ids[1:]], rtol=1e-12)
    np.testing.assert_array_equal(s["top1"], (p.argmax(1) == q.argmax(1)).astype(float))
    assert s["kl"].mean() > 0


def test_standard_errors_shrink_as_one_over_root_n():
    rng = np.random.default_rng(0)
    x = rng.exponential(size=40_000)  # KL-like: positive, skewed
    se = [quality.mean_and_se(x[:n])[1] for n in (2_500, 10_000, 40_000)]
    assert 0.45 < se[1] / se[0] < 0.55 and 0.45 < se[2] / se[1] < 0.55
    p99 = [quality.percentile_and_se(x[:n])[1] for n in (2_500, 40_000)]
    assert 0.15 < p99[1] / p99[0] < 0.35  # √16 = 4 more tokens: a quarter
    m, s = quality.mean_and_se(x)
    assert abs(m - 1) < 3 * s  # the exponential's mean is 1


def test_summary_gives_perplexity_with_its_error_by_the_delta_method():
    nll = np.array([1.0, 2.0, 3.0, 2.0])
    out = quality.summarize({"nll": nll, "kl": np.array([0, 0.1, 0.2, 0.1]), "top1": np.array([1.0, 1, 0, 1])})
    assert out["perplexity"] == pytest.approx(math.exp(2.0))
    assert out["perplexity_se"] == pytest.approx(math.exp(2.0) * nll.std(ddof=1) / 2)
    assert out["kl_mean"] == pytest.approx(0.1) and out["top1"] == 0.75 and out["tokens"] == 4


def test_standard_errors_apart_reads_each_rows_error():
    a, b = {"kl_mean": 0.5, "kl_mean_se": 0.03}, {"kl_mean": 0.3, "kl_mean_se": 0.04}
    assert quality.standard_errors_apart(a, b) == pytest.approx(0.2 / 0.05)
    assert quality.standard_errors_apart(b, a) == pytest.approx(-4.0)
    assert quality.standard_errors_apart({"x": 1.0, "x_se": 0.0}, {"x": 0.0, "x_se": 0.0}, "x") == math.inf
    assert quality.standard_errors_apart({"x": 1.0, "x_se": 0.0}, {"x": 1.0, "x_se": 0.0}, "x") == 0.0
