"""Quantization: round-trip bounds as properties, int4 packing, the W8A8 integer path against its float formula,
LLM.int8()'s split, the SmoothQuant fold as the identity, the int8 KV cache, quantized weights inside a model."""

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from helpers import assert_close, randn, tiny_llama
from hypothesis import given
from hypothesis import strategies as st

import transformer_np as tn
from transformer_np.core.nn import rms_norm
from transformer_np.efficient import kv_int8 as KV
from transformer_np.efficient import quantize as Q

pytestmark = pytest.mark.check  # the math check tier: `make check` (see the Makefile)

finite = st.floats(-1e3, 1e3, allow_nan=False, width=32)
matrices = hnp.arrays(np.float32, st.tuples(st.sampled_from([2, 4, 8, 16]), st.sampled_from([2, 6, 8])),
                      elements=finite)
layouts = st.sampled_from([dict(axis=None), dict(axis=0), dict(axis=1), dict(axis=0, group_size=2),
                           dict(axis=1, group_size=2)])


def step(qt):
    """The grid step s of every element, in the original layout."""
    return Q._ungrouped(np.broadcast_to(qt.scale, qt.integers().shape), qt.shape, qt.axis)


# --- round trips ------------------------------------------------------------------------------------------
@given(matrices, layouts, st.sampled_from([(8, False), (4, True), (4, False), (3, False)]))
def test_symmetric_round_trip_error_is_at_most_half_a_step(w, layout, bits_pack):
    bits, pack = bits_pack
    qt = Q.quantize_symmetric(w, bits, pack=pack, **layout)
    err = np.abs(Q.dequantize(qt) - w)
    assert np.all(err <= step(qt) / 2 * (1 + 1e-5) + 1e-30)  # 1e-5: float32 rounding of x / s and s · q
    assert np.all(np.abs(qt.integers()) <= 2 ** (bits - 1) - 1)


@given(matrices, layouts, st.sampled_from([(8, False), (4, True)]))
def test_asymmetric_round_trip_error_is_at_most_half_a_step(w, layout, bits_pack):
    bits, pack = bits_pack
    qt = Q.quantize_asymmetric(w, bits, pack=pack, **layout)
    err = np.abs(Q.dequantize(qt) - w)
    # the integer zero point shifts the grid by up to s/2, so the extremes of a group may be a whole step away
    assert np.all(err <= step(qt) * (1 + 1e-5) + 1e-30)
    assert np.all((qt.integers() >= 0) & (qt.integers() <= 2**bits - 1))


def test_asymmetric_grid_represents_zero_exactly(rng):
    x = np.abs(randn(rng, 8, 16, dtype=np.float32)) + 1.0  # all positive: the grid is stretched to hold 0
    x[:, 3] = 0.0
    assert np.all(Q.dequantize(Q.quantize_asymmetric(x, 8, axis=1))[:, 3] == 0.0)


@given(hnp.arrays(np.int8, st.integers(1, 40).map(lambda n: 2 * n), elements=st.integers(-8, 7)))
def test_int4_packing_is_lossless_on_the_grid(q):
    packed = Q.pack_int4(q)
    assert packed.dtype == np.uint8 and packed.shape == (q.size // 2,)
    assert np.array_equal(Q.unpack_int4(packed, q.size), q)
    u = (q.astype(np.int16) + 8).astype(np.uint8)
    assert np.array_equal(Q.unpack_int4(Q.pack_int4(u), q.size, signed=False), u)


def test_groups_of_32_beat_one_scale_per_channel_on_a_matrix_with_outliers(rng):
    w = randn(rng, 256, 64, dtype=np.float32)
    w[rng.integers(0, 256, 20), rng.integers(0, 64, 20)] *= 30  # a few large weights
    err = lambda **kw: np.abs(Q.dequantize(Q.quantize_symmetric(w, 4, axis=0, **kw)) - w).mean()  # noqa: E731
    assert err(group_size=32) < err()


def test_bits_and_group_size_are_checked(rng):
    w = randn(rng, 6, 4, dtype=np.float32)
    with pytest.raises(ValueError, match="bits must lie in 2…8, got 9"):
        Q.quantize_symmetric(w, 9)
    with pytest.raises(ValueError, match="bits must be ≤ 4"):
        Q.quantize_symmetric(w, 8, pack=True)
    with pytest.raises(ValueError, match="group_size=4 must divide the length 6 of axis 0"):
        Q.quantize_symmetric(w, 8, axis=0, group_size=4)


# --- W8A8 and LLM.int8() ------------------------------------------------------------------------------------
def test_w8a8_integer_path_equals_its_float_formula(rng):
    x, w = randn(rng, 7, 48, dtype=np.float32) * 3, randn(rng, 48, 10, dtype=np.float32)
    m = Q.W8A8Matrix(w)
    xq = Q.quantize_symmetric(x, 8, axis=-1)
    qx = xq.q.reshape(x.shape).astype(np.int64)
    exact = qx @ m.w_q.astype(np.int64)  # the int32 accumulator's sums, in int64: no overflow possible
    want = exact.astype(np.float32) * xq.scale.reshape(-1, 1) * m.w_scale  # rescaled as w8a8_matmul does
    got = x @ m
    assert got.dtype == np.float32 and got.shape == (7, 10)
    assert np.array_equal(got, want)  # bit for bit: the float64 product held every integer sum exactly
    # and it is the product of the dequantized operands
    assert_close(got, Q.dequantize(xq).astype(np.float64) @ m.dequantize().astype(np.float64), rtol=1e-5, atol=1e-5)


def test_w8a8_refuses_an_accumulator_that_could_overflow(rng):
    with pytest.raises(ValueError, match="overflow the int32 accumulator"):
        Q.w8a8_matmul(np.zeros((1, 140_000), np.float32), np.zeros((140_000, 1), np.int8), np.ones((1, 1)))


def test_llm_int8_sends_outlier_columns_through_floats(rng):
    x, w = randn(rng, 5, 32, dtype=np.float32), randn(rng, 32, 8, dtype=np.float32)
    m = Q.LLMInt8Matrix(w, threshold=6.0)
    assert_close(x @ m, x @ Q.W8A8Matrix(w), atol=0)  # no |x| >= 6: the int8 path alone
    x[2, [4, 9]] = [40.0, -9.0]
    got = x @ m
    inner = x.copy()
    inner[:, [4, 9]] = 0
    want = Q.w8a8_matmul(inner, m.w_q, m.w_scale) + x[:, [4, 9]] @ m.dequantize()[[4, 9]]
    assert_close(got, want, rtol=1e-6, atol=1e-6)
    assert m.outlier_columns == 2 and m.products == 2
    y, n = Q.llm_int8_matmul(x, m.w_q, m.w_scale, w=w)  # the float rows from the float weights, as the paper keeps
    assert n == 2
    assert_close(y, Q.w8a8_matmul(inner, m.w_q, m.w_scale) + x[:, [4, 9]] @ w[[4, 9]], rtol=1e-6, atol=1e-6)
    # the outliers no longer spoil the other columns' per-token scale: closer to x @ w than W8A8
    assert np.abs(got - x @ w).max() < np.abs(x @ Q.W8A8Matrix(w) - x @ w).max()


# --- SmoothQuant ----------------------------------------------------------------------------------------------
def test_smoothquant_fold_is_the_same_function(rng):
    x = randn(rng, 9, 16, dtype=np.float32)
    x[:, 5] *= 50  # an outlier channel
    gamma, ws = randn(rng, 16, dtype=np.float32), [randn(rng, 16, n, dtype=np.float32) for n in (16, 8)]
    h = rms_norm(x, gamma, 1e-5)
    s = Q.smoothing_factors(np.abs(h).max(0), np.max([np.abs(w).max(1) for w in ws], axis=0), alpha=0.5)
    gamma2, ws2 = Q.smooth_fold(gamma, ws, s)
    h2 = rms_norm(x, gamma2, 1e-5)
    for w, w2 in zip(ws, ws2):
        ref = h @ w
        assert np.abs(h2 @ w2 - ref).max() <= 1e-5 * np.abs(ref).max()
    assert np.abs(h2).max(0).max() / np.abs(h2).max(0).min() < np.abs(h).max(0).max() / np.abs(h).max(0).min()


def test_smoothing_factors_follow_the_formula():
    s = Q.smoothing_factors(np.array([4.0, 9.0, 0.0]), np.array([1.0, 4.0, 2.0]), alpha=0.5)
    assert_close(s, [2.0, 1.5, 1.0], atol=1e-12)  # √4/√1, √9/√4, and 1 where a channel is never used


# --- weights in a model -----------------------------------------------------------------------------------
def test_quantized_matrix_behaves_as_its_dequantized_matrix(rng):
    w = randn(rng, 12, 6, dtype=np.float32)
    m = Q.WeightOnlyMatrix(w, bits=8, axis=1)  # scales along rows: each row on its own, as an embedding table
    deq = m.dequantize()
    x = randn(rng, 3, 12, dtype=np.float32)
    assert m.shape == (12, 6) and m.T.shape == (6, 12) and m.ndim == 2 and m.size == 72
    assert_close(x @ m, x @ deq, atol=0)
    y = randn(rng, 2, 6, dtype=np.float32)  # m.T's outputs are m's rows: the tile product (core.tiled), whose
    assert_close(y @ m.T, y @ deq.T, atol=1e-6, rtol=1e-6)  # sums round in another order than BLAS's whole product
    ids = np.array([[3, 0], [11, 3]])
    assert_close(tn.core.token_embedding(ids, m, scale=False), deq[ids], atol=0)
    assert_close(np.asarray(m), deq, atol=0)
    assert m.nbytes == 72 + 12 * 4  # one int8 a weight and one float32 scale a row
    assert_close(m.take_rows(np.array([5, 2])), deq[[5, 2]], atol=0)


def test_weight_only_int8_llama_stays_close_to_float(rng):
    from transformer_np.pretrained.llama import llama_logits

    params, cfg = tiny_llama(rng)
    params = tn.core.tree_map(lambda a: a.astype(np.float32), params)
    quantized = Q.quantize_params(params, lambda w: Q.WeightOnlyMatrix(w, bits=8))
    ids = rng.integers(0, cfg.vocab_size, (2, 7))
    want, got = llama_logits(params, ids, cfg)[0], llama_logits(quantized, ids, cfg)[0]
    assert got.shape == want.shape
    assert 0 < np.abs(got - want).max() < 0.05 * np.abs(want).max()
    assert tn.core.tree.params_nbytes(quantized) < 0.4 * tn.core.tree.params_nbytes(params)


# --- the int8 KV cache ----------------------------------------------------------------------------------------
def test_int8_cache_token_by_token_equals_one_prefill(rng):
    from transformer_np.pretrained.llama import llama_logits

    params, cfg = tiny_llama(rng)
    ids = rng.integers(0, cfg.vocab_size, (1, 9))
    whole = KV.int8_cache(cfg.n_layers)
    all_at_once = llama_logits(params, ids, cfg, cache=whole)[0]
    cache = KV.int8_cache(cfg.n_layers)
    steps = [llama_logits(params, ids[:, :4], cfg, cache=cache)[0]]
    steps += [llama_logits(params, ids[:, t:t + 1], cfg, cache=cache)[0] for t in range(4, 9)]
    assert_close(np.concatenate(steps, axis=1), all_at_once, atol=1e-12)  # the same quantizer per token
    plain = llama_logits(params, ids, cfg)[0]
    assert 0 < np.abs(all_at_once - plain).max() < 0.05 * np.abs(plain).max()
    float_cache = tn.decoding.new_cache(cfg.n_layers)
    llama_logits(params, ids, cfg, cache=float_cache)
    D = cfg.d_head
    assert whole.nbytes() * (8 / (1 + 4 / D)) == float_cache.nbytes()


def test_int8_cache_truncates_like_the_float_cache(rng):
    c = KV.Int8LayerCache()
    k, v = randn(rng, 1, 2, 5, 4), randn(rng, 1, 2, 5, 4)
    c.extend(k, v)
    c.truncate(3)
    assert c.length == 3 and c.k.shape == (1, 2, 3, 4)
    assert_close(c.k, Q.dequantize(Q.quantize_symmetric(k, 8, axis=-1), np.float64)[:, :, :3], atol=0)
    c.truncate(0)
    assert c.length == 0 and c.nbytes() == 0


# --- any array library ------------------------------------------------------------------------------------
def test_quantizers_run_on_torch_tensors(rng):
    torch = pytest.importorskip("torch")
    w = randn(rng, 16, 8, dtype=np.float32)
    for quantize in (Q.quantize_symmetric, Q.quantize_asymmetric):
        for bits, pack in ((8, False), (4, True)):
            qn = quantize(w, bits, axis=0, group_size=8, pack=pack)
            qt = quantize(torch.from_numpy(w), bits, axis=0, group_size=8, pack=pack)
            assert isinstance(qt.q, torch.Tensor)
            assert np.array_equal(qt.integers().numpy(), qn.integers())
            assert_close(Q.dequantize(qt), Q.dequantize(qn), atol=0)
    x = torch.from_numpy(randn(rng, 3, 16, dtype=np.float32))
    assert_close(x @ Q.W8A8Matrix(torch.from_numpy(w)), x.numpy() @ Q.W8A8Matrix(w), atol=1e-6)


def test_channel_key_cache_cuts_its_blocks_at_fixed_positions(rng):
    """One prefill and token-by-token decoding cut the same blocks, so the first layer (whose keys come from the
    embeddings alone) holds the same cache either way.  Deeper layers differ a little, and not by mistake: a
    query of a prefill reads its own block already quantized, a decoding step reads it still in float, so the
    hidden states that make the next layer's keys differ by the quantization error."""
    from transformer_np.pretrained.llama import llama_logits

    params, cfg = tiny_llama(rng)
    ids = rng.integers(0, cfg.vocab_size, (1, 11))
    whole = KV.int8_cache(cfg.n_layers, keys="channel", group=4)
    all_at_once = llama_logits(params, ids, cfg, cache=whole)[0]
    cache = KV.int8_cache(cfg.n_layers, keys="channel", group=4)
    llama_logits(params, ids[:, :3], cfg, cache=cache)
    last = [llama_logits(params, ids[:, t:t + 1], cfg, cache=cache)[0] for t in range(3, 11)][-1]
    assert_close(cache[0].k, whole[0].k, atol=1e-12)
    assert_close(cache[0].v, whole[0].v, atol=1e-12)
    assert len(whole[0].k_blocks) == 2 and whole[0].k_tail.shape[2] == 3 and whole[0].length == 11
    plain = llama_logits(params, ids, cfg)[0]
    scale = np.abs(plain).max()
    assert np.abs(last[:, -1] - all_at_once[:, -1]).max() < 0.01 * scale
    assert 0 < np.abs(all_at_once - plain).max() < 0.05 * scale


def test_channel_keys_beat_token_keys_on_an_outlier_channel(rng):
    k = randn(rng, 1, 2, 32, 16)
    k[..., 3] *= 40  # keys have outlier channels: a per-token scale is set by them
    v = randn(rng, 1, 2, 32, 16)
    by_token, by_channel = KV.Int8LayerCache(), KV.Int8ChannelKeysCache(group=32)
    err = lambda c: np.abs(c.extend(k, v)[0] - k)[..., [0, 1, 2, 4, 5]].mean()  # noqa: E731 - the ordinary channels
    assert err(by_channel) < err(by_token) / 5
    assert by_channel.nbytes() == 2 * 32 * 16 + 2 * 16 * 4 + by_channel.vq.nbytes  # int8 keys, a scale a channel


def test_channel_key_cache_rolls_back_only_inside_its_float_tail(rng):
    c = KV.Int8ChannelKeysCache(group=4)
    c.extend(randn(rng, 1, 1, 6, 2), randn(rng, 1, 1, 6, 2))
    c.truncate(5)
    assert c.length == 5 and c.k.shape[2] == 5 and c.k_tail.shape[2] == 1
    with pytest.raises(NotImplementedError, match="inside a finished block"):
        c.truncate(2)


# --- a NaN is carried on, never rounded away -------------------------------------------------------------------
@pytest.mark.parametrize("make", [lambda w: Q.WeightOnlyMatrix(w, 8, axis=0),
                                  lambda w: Q.WeightOnlyMatrix(w, 4, axis=0, group_size=8),
                                  lambda w: Q.WeightOnlyMatrix(w, 4, axis=0, group_size=8, asymmetric=True),
                                  Q.W8A8Matrix, Q.LLMInt8Matrix])
def test_a_nan_weight_makes_its_group_nan_not_zero(rng, make):
    w = rng.standard_normal((16, 4)).astype(np.float32)
    w[3, 1] = np.nan
    got = make(w)
    assert np.isnan(got.dequantize()[3, 1]) and np.isfinite(got.dequantize()[:, [0, 2, 3]]).all()
    y = rng.standard_normal((2, 16)).astype(np.float32) @ got
    assert np.isnan(y[:, 1]).all() and np.isfinite(y[:, [0, 2, 3]]).all()


@pytest.mark.parametrize("make", [Q.W8A8Matrix, Q.LLMInt8Matrix])
def test_a_nan_activation_makes_its_output_row_nan(rng, make):
    m = make(rng.standard_normal((16, 4)).astype(np.float32))
    x = rng.standard_normal((3, 16)).astype(np.float32)
    x[1, 5] = np.nan
    y = x @ m
    assert np.isnan(y[1]).all() and np.isfinite(y[[0, 2]]).all()


def test_an_int8_kv_cache_keeps_a_nan_value_nan():
    from transformer_np.efficient.kv_int8 import Int8LayerCache

    k = np.ones((1, 2, 3, 8), np.float32)
    v = k.copy()
    v[0, 1, 2, 4] = np.nan
    _, v_all = Int8LayerCache().extend(k, v)
    assert np.isnan(v_all[0, 1, 2]).all() and np.isfinite(v_all[0, 0]).all() and np.isfinite(v_all[0, 1, :2]).all()
