"""Mask builders: True where query t may attend to key s."""

import numpy as np
import pytest

import transformer_np as tn

pytestmark = pytest.mark.check  # the math check tier: `make check` (see the Makefile)


def test_causal_mask_is_the_lower_triangle():
    assert np.array_equal(tn.causal_mask(4), np.tril(np.ones((4, 4), bool)))


def test_causal_mask_with_cached_keys_aligns_queries_to_the_end():
    m = tn.causal_mask(2, 5)  # two new queries at positions 3 and 4
    assert np.array_equal(m, np.tril(np.ones((5, 5), bool))[3:])


def test_padding_mask_from_lengths_and_from_pad_id_agree():
    ids = np.array([[5, 6, 7, 0], [5, 0, 0, 0]])
    by_id = tn.padding_mask(ids=ids, pad_id=0)
    by_len = tn.padding_mask(np.array([3, 1]), max_len=4)
    assert by_id.shape == (2, 1, 1, 4)
    assert np.array_equal(by_id, by_len)


def test_combined_mask_is_the_and_of_its_parts():
    pad = tn.padding_mask(np.array([2, 3]), max_len=3)  # (2, 1, 1, 3)
    both = tn.combine_masks(tn.causal_mask(3), pad, None)
    assert both.shape == (2, 1, 3, 3)
    for b, n in enumerate([2, 3]):
        assert np.array_equal(both[b, 0], np.tril(np.ones((3, 3), bool)) & (np.arange(3) < n))
    assert tn.combine_masks(None, None) is None


def test_mask_builders_reject_bad_arguments():
    with pytest.raises(ValueError, match="T must be a positive integer, got 0"):
        tn.causal_mask(0)
    with pytest.raises(ValueError, match="S >= T"):
        tn.causal_mask(4, 3)
    with pytest.raises(ValueError, match="exactly one of lengths= or ids="):
        tn.padding_mask()
    with pytest.raises(ValueError, match="needs pad_id"):
        tn.padding_mask(ids=np.zeros((1, 2), int))
    with pytest.raises(ValueError, match=r"lengths must lie in \[0, max_len=2\]"):
        tn.padding_mask(np.array([3]), max_len=2)
