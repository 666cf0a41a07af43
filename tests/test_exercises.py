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
