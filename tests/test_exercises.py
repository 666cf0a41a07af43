"""The exercise checkers accept a right answer and reject the lazy ones — a constant, an answer right for one
configuration or one itemsize only — without printing the expected value."""

import numpy as np
import pytest

import transformer_np as tn
from transformer_np.teaching import exercises


def kv_bytes(cfg, B, t, itemsize):
    return 2 * cfg.n_decoder_layers * B * cfg.n_heads * t * cfg.d_head * itemsize


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
