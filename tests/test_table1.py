"""The paper's Table 1, computed: each comparison layer equals its formula; path lengths and FLOPs follow the
table's orders of growth."""

import math

import numpy as np
import pytest

from transformer_np.teaching import table1

pytestmark = pytest.mark.check  # the math check tier: `make check` (see the Makefile)


def test_recurrent_layer_equals_its_recurrence(rng):
    x, w_h, w_x, b = rng.standard_normal((5, 3)), rng.standard_normal((3, 3)), rng.standard_normal((3, 3)), \
        rng.standard_normal(3)
    h, want = np.zeros(3), []
    for t in range(5):
        h = np.tanh(h @ w_h + x[t] @ w_x + b)
        want.append(h)
    np.testing.assert_allclose(table1.recurrent_layer(x, w_h, w_x, b), np.array(want), atol=1e-12)


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_convolutional_layer_equals_its_sum_with_zero_padding(rng, k):
    n, d = 6, 3
    x, w, b = rng.standard_normal((n, d)), rng.standard_normal((k, d, d)), rng.standard_normal(d)
    want = np.tile(b, (n, 1))
    for t in range(n):
        for j in range(k):
            s = t + j - k // 2
            if 0 <= s < n:
                want[t] += x[s] @ w[j]
    np.testing.assert_allclose(table1.convolutional_layer(x, w, b), want, atol=1e-12)


@pytest.mark.parametrize("n", [1, 2, 9, 64])
def test_path_lengths_follow_table_1(n):
    assert table1.path_length("self-attention", n) == (1 if n > 1 else 0)
    assert table1.path_length("recurrent", n) == n - 1
    for k in (3, 5, 9):
        assert table1.path_length("convolutional", n, k=k) == math.ceil((n - 1) / (k // 2))
    assert table1.path_length("self-attention", n, r=4) == math.ceil((n - 1) / 4)


def test_self_attention_flops_grow_quadratically_and_recurrent_linearly():
    d = 64
    assert table1.flops("recurrent", 2048, d) == 2 * table1.flops("recurrent", 1024, d)
    big = table1.flops("self-attention", 8192, d) / table1.flops("self-attention", 4096, d)
    assert 3.5 < big < 4  # the n² term dominates once n >> d


def test_time_layers_times_every_layer_at_every_length():
    times = table1.time_layers([4, 8], d=8, repeat=1)
    assert set(times) == set(table1.LAYERS) and all(len(t) == 2 and min(t) > 0 for t in times.values())


def test_unknown_layer_kind_is_rejected():
    with pytest.raises(ValueError, match="kind must be one of"):
        table1.path_length("transformer", 8)
