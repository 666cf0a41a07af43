"""Partitioned layers over n simulated chips equal the unpartitioned layer (float64), and the bytes their
collectives send equal the formulas (Pope et al. 2022 §3)."""

import numpy as np
import pytest

from transformer_np.efficient import cost_model as cm
from transformer_np.efficient import simulated_partitioning as P

EXACT = 1e-12  # float64: only the order of the sums differs


@pytest.fixture
def ffn(rng):
    E, F, N = 24, 96, 10
    return rng.standard_normal((N, E)), rng.standard_normal((E, F)) / 5, rng.standard_normal((F, E)) / 10


@pytest.mark.parametrize("n", [1, 2, 4, 8])
def test_1d_weight_stationary_equals_the_layer_and_sends_2NE(ffn, n):
    x, w_in, w_out = ffn
    mesh = P.Mesh(n)
    y = np.concatenate(P.ffn_1d_weight_stationary(np.array_split(x, n, axis=1), w_in, w_out, mesh), axis=1)
    np.testing.assert_allclose(y, P.ffn_reference(x, w_in, w_out), atol=EXACT, rtol=0)
    assert mesh.total_sent == pytest.approx(P.ffn_bytes("1d", *x.shape, w_in.shape[1], n, itemsize=8))
    assert mesh.sent["all-gather"] == mesh.sent["reduce-scatter"] == pytest.approx((n - 1) / n * x.nbytes)


@pytest.mark.parametrize("n,X", [(1, 1), (2, 1), (2, 2), (4, 2), (8, 2), (8, 4)])
def test_2d_weight_stationary_equals_the_layer_and_its_bytes_formula(ffn, n, X):
    x, w_in, w_out = ffn
    mesh = P.Mesh(n)
    shards = P.ffn_2d_weight_stationary(P.split_2d_input(x, X, n // X), w_in, w_out, mesh, X)
    np.testing.assert_allclose(np.concatenate(shards, axis=1), P.ffn_reference(x, w_in, w_out), atol=EXACT, rtol=0)
    assert mesh.total_sent == pytest.approx(P.ffn_bytes("2d", *x.shape, w_in.shape[1], n, X, itemsize=8))


@pytest.mark.parametrize("n", [1, 2, 4, 8])
def test_weight_gathered_equals_the_layer_and_sends_the_weights(ffn, n):
    x, w_in, w_out = ffn
    mesh = P.Mesh(n)
    y = np.concatenate(P.ffn_weight_gathered(np.array_split(x, n, axis=0), w_in, w_out, mesh), axis=0)
    np.testing.assert_allclose(y, P.ffn_reference(x, w_in, w_out), atol=EXACT, rtol=0)
    assert mesh.sent["all-gather"] == pytest.approx((n - 1) / n * (w_in.nbytes + w_out.nbytes))
    assert mesh.total_sent == pytest.approx(P.ffn_bytes("gathered", *x.shape, w_in.shape[1], n, itemsize=8))


def test_layouts_trade_places_as_the_batch_grows():
    # PaLM 540B's feed-forward on 64 chips: 2D weight-stationary beats 1D at every batch, and weight-gathered
    # wins only once the tokens per step are many (prefill of large batches)
    E, F, hw = cm.PALM_540B.d_model, cm.PALM_540B.d_ff, cm.HARDWARE["tpu-v4"]
    t = {layout: [P.ffn_comm_time(layout, N, E, F, 64, hw) for N in (64, 2048, 1 << 20)]
         for layout in ("1d", "2d", "gathered")}
    assert all(a < b for a, b in zip(t["2d"], t["1d"], strict=True))
    assert t["gathered"][0] > t["2d"][0] and t["gathered"][2] < t["2d"][2]


def test_2d_communication_approaches_pope_8NE_over_root_n():
    # with F = 4E the best grid sends 2·NE/X·(Y−1)/Y + 2·NF/Y·(X−1)/X → 8·N·E/√n as n grows (Pope et al. A.2.1)
    E, F, N = 18432, 73728, 512
    ratio = [P.ffn_bytes("2d", N, E, F, n, P.best_2d_split(n, E, F), itemsize=1) * n**0.5 / (8 * N * E)
             for n in (64, 256, 1024)]
    assert 0.75 < ratio[0] < ratio[1] < ratio[2] <= 1.0
    assert P.ffn_bytes("1d", N, E, F, 256) / P.ffn_bytes("1d", N, E, F, 16) == pytest.approx(1, rel=0.07)


@pytest.mark.parametrize("n", [1, 2, 4, 8])
def test_multiquery_sharded_over_heads_or_batch_equals_the_layer(rng, n):
    B, H, S, D = 8, 16, 12, 4
    q, k, v = rng.standard_normal((B, H, 1, D)), rng.standard_normal((B, 1, S, D)), rng.standard_normal((B, 1, S, D))
    ref = P.mqa_reference(q, k, v)
    heads, read_heads = P.mqa_sharded_over_heads(q, k, v, P.Mesh(n))
    np.testing.assert_allclose(np.concatenate(heads, axis=1), ref, atol=EXACT, rtol=0)
    mesh = P.Mesh(n)
    batch, read_batch = P.mqa_sharded_over_batch(q, k, v, mesh)
    np.testing.assert_allclose(np.concatenate(batch, axis=1), ref, atol=EXACT, rtol=0)
    assert read_heads == k.nbytes + v.nbytes and read_batch == read_heads // n  # the cache read, n times less
    assert mesh.sent["all-to-all"] == pytest.approx(P.mqa_batch_bytes(B, H, D, n, 8))


def test_all_to_all_moves_the_shard_axis():
    mesh = P.Mesh(4)
    a = np.arange(8 * 4).reshape(8, 4)
    out = mesh.all_to_all(np.array_split(a, 4, axis=1), split_axis=0, concat_axis=1)
    np.testing.assert_array_equal(np.concatenate(out, axis=0), a)
    assert out[0].shape == (2, 4)


def test_a_collective_checks_it_has_one_array_per_chip():
    with pytest.raises(ValueError, match="one array per chip"):
        P.Mesh(4).all_gather([np.zeros(2)] * 3, axis=0)
    with pytest.raises(ValueError, match="X=3"):
        P.ffn_2d_weight_stationary([np.zeros((1, 1))] * 4, np.zeros((4, 4)), np.zeros((4, 4)), P.Mesh(4), 3)
