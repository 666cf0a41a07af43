"""GPTQ and AWQ against round-to-nearest on the same grid: GPTQ equals a loop-level Optimal Brain Surgeon
reference, reduces to RTN bit for bit when H = I and beats RTN's layer output error on correlated inputs; AWQ's
scales fold into the norms without changing the float model, and its search never loses to RTN on the rows it
searches."""

import numpy as np
import pytest
from helpers import tiny_llama

import transformer_np as tn
from transformer_np.efficient import awq, gptq, quality
from transformer_np.efficient import compress as C
from transformer_np.efficient import quantize as Q
from transformer_np.pretrained.llama import LlamaModel, llama_logits


def mixing(rng, c):
    return np.eye(c) + 0.5 * rng.standard_normal((c, c)) / np.sqrt(c)


def correlated_inputs(rng, n, c, mix=None):
    """Rows whose channels correlate (H = XᵀX far from diagonal: z · mix) and a few carry large values; rows drawn
    with the same ``mix`` come from the same distribution."""
    x = rng.standard_normal((n, c)) @ (mixing(rng, c) if mix is None else mix)
    x[:, :3] *= 8  # outlier channels
    return x.astype(np.float32)


def gptq_loops(w, h, bits, group_size, damp=0.01):
    """GPTQ as Optimal Brain Surgeon in its first form: after each row is rounded, the remaining rows move by
    −e · [H⁻¹]_{i,:} / [H⁻¹]_{ii}, and row i is removed from H⁻¹ by a Gaussian elimination step — no Cholesky
    factor, no lazy batches; float64.  Returns (q (C_out, C_in), scales (C_out, n_groups))."""
    W = np.array(w, np.float64).T.copy()
    C_out, C_in = W.shape
    h = np.array(h, np.float64)
    h[np.diag_indices(C_in)] += damp * np.mean(np.diag(h))
    hinv = np.linalg.inv(h)
    q_max = 2 ** (bits - 1) - 1
    q, scales = np.zeros((C_out, C_in)), np.zeros((C_out, C_in // group_size))
    for i in range(C_in):
        if i % group_size == 0:
            s = np.abs(W[:, i:i + group_size]).max(axis=1) / q_max
            scales[:, i // group_size] = np.where(s > 0, s, 1)
        s = scales[:, i // group_size]
        for r in range(C_out):
            q[r, i] = min(max(round(W[r, i] / s[r]), -q_max), q_max)
            e = (W[r, i] - q[r, i] * s[r]) / hinv[i, i]
            for j in range(i + 1, C_in):
                W[r, j] -= e * hinv[i, j]
        hinv = hinv - np.outer(hinv[:, i], hinv[i, :]) / hinv[i, i]  # eliminate row and column i
    return q, scales


def dequantized(qt):
    return Q.dequantize(qt)


def test_gptq_equals_the_loop_level_reference(rng):
    w = rng.standard_normal((16, 5))
    x = correlated_inputs(rng, 64, 16).astype(np.float64)
    q_ref, s_ref = gptq_loops(w, x.T @ x, bits=4, group_size=8)
    qt = gptq.gptq_quantize(w, x.T @ x, bits=4, group_size=8, block=8, dtype=np.float64)
    np.testing.assert_array_equal(qt.integers().reshape(5, 16), q_ref)
    np.testing.assert_allclose(qt.scale.reshape(5, 2), s_ref, rtol=1e-7)  # the scales are stored as float32


def test_lazy_batches_are_the_same_updates_in_another_order(rng):
    w = rng.standard_normal((64, 12)).astype(np.float32)
    x = correlated_inputs(rng, 200, 64)
    a = dequantized(gptq.gptq_quantize(w, x.T @ x, bits=4, group_size=16, block=16, dtype=np.float64))
    b = dequantized(gptq.gptq_quantize(w, x.T @ x, bits=4, group_size=16, block=64, dtype=np.float64))
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("bits, group_size", [(4, None), (4, 16), (3, 32), (8, 16)])
def test_gptq_with_identity_hessian_is_round_to_nearest_bit_for_bit(rng, bits, group_size):
    w = rng.standard_normal((64, 24)).astype(np.float32)
    got = gptq.gptq_matrix(w, np.eye(64), bits, group_size)
    want = Q.WeightOnlyMatrix(w, bits, axis=0, group_size=group_size)
    np.testing.assert_array_equal(got.dequantize(), want.dequantize())
    assert got.nbytes == want.nbytes


@pytest.mark.parametrize("bits, group_size", [(4, 32), (3, 32), (4, None)])
def test_gptq_output_error_is_below_round_to_nearest(rng, bits, group_size):
    w = rng.standard_normal((128, 48)).astype(np.float32) * 0.1
    mix = mixing(rng, 128)
    x, held_out = correlated_inputs(rng, 512, 128, mix), correlated_inputs(rng, 512, 128, mix)  # one distribution
    err = lambda m, x: float(np.linalg.norm(x @ w - x @ m.dequantize()))  # noqa: E731
    g, r = gptq.gptq_matrix(w, x.T @ x, bits, group_size), Q.WeightOnlyMatrix(w, bits, axis=0, group_size=group_size)
    assert err(g, x) < 0.9 * err(r, x)
    assert err(g, held_out) < err(r, held_out)


def test_output_error_from_the_hessian_equals_the_error_on_the_inputs(rng):
    w, x = rng.standard_normal((32, 8)), correlated_inputs(rng, 100, 32).astype(np.float64)
    w_hat = w + 0.01 * rng.standard_normal(w.shape)
    np.testing.assert_allclose(gptq.output_error(w, w_hat, x.T @ x), np.sum((x @ (w - w_hat)) ** 2, axis=0),
                               rtol=1e-10)


def test_gptq_leaves_out_an_input_that_never_fired(rng):
    w = rng.standard_normal((32, 8)).astype(np.float32)
    x = correlated_inputs(rng, 100, 32)
    x[:, 5] = 0
    m = gptq.gptq_matrix(w, x.T @ x, 4, 16)
    np.testing.assert_array_equal(m.dequantize()[5], 0.0)


def test_gptq_refuses_a_hessian_of_the_wrong_size(rng):
    with pytest.raises(ValueError, match=r"hessian must be \(C_in, C_in\) = \(32, 32\)"):
        gptq.gptq_quantize(np.zeros((32, 4), np.float32), np.eye(16))
    with pytest.raises(ValueError, match="group_size=24 must divide C_in=32"):
        gptq.gptq_quantize(np.zeros((32, 4), np.float32), np.eye(32), group_size=24)


# --- AWQ -------------------------------------------------------------------------------------------------------
def tiny_model(rng):
    params, cfg = tiny_llama(rng, vocab_size=40)
    params = tn.core.tree_map(lambda a: a.astype(np.float32), params)
    return LlamaModel(params, cfg, tokenizer=None), cfg


def test_folded_scales_leave_the_float_model_the_same_function(rng):
    model, cfg = tiny_model(rng)
    ids = rng.integers(0, cfg.vocab_size, 40)
    rec = quality.record_activations(model, ids, window=20, keep_rows=16)
    for alpha in (0.25, 0.5, 0.9):
        folded = awq.fold_scales(model.params, rec, alpha)
        assert not np.array_equal(tn.core.flatten(folded)["decoder/layers/0/attn/w_q"], model.params["decoder"][
            "layers"][0]["attn"]["w_q"])
        a, b = llama_logits(model.params, ids[None, :20], cfg)[0], llama_logits(folded, ids[None, :20], cfg)[0]
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5 * np.abs(a).max())


def test_awq_search_never_loses_to_round_to_nearest_on_its_rows(rng):
    x = correlated_inputs(rng, 256, 64)
    w = [rng.standard_normal((64, 32)).astype(np.float32) * 0.1 for _ in range(2)]
    absmean = np.abs(x).mean(axis=0)
    s, alpha, errors = awq.search_scale(x, absmean, w, bits=3, group_size=32)
    rtn_error = sum(float(np.sum((x @ m - x @ Q.WeightOnlyMatrix(m, 3, axis=0, group_size=32).dequantize()) ** 2))
                    for m in w)
    assert errors[0.0] == pytest.approx(rtn_error, rel=1e-6)  # α = 0: s = 1, plain RTN
    assert min(errors.values()) == errors[alpha] <= rtn_error and alpha > 0  # the outlier channels are protected
    np.testing.assert_allclose(s, awq.candidate_scales(absmean, alpha))


def test_scaled_input_weight_divides_its_input_by_the_scales(rng):
    w = rng.standard_normal((32, 8)).astype(np.float32)
    s = np.linspace(0.5, 2, 32).astype(np.float32)
    m = awq.ScaledInputMatrix(w, s, 4, 16)
    x = rng.standard_normal((3, 32)).astype(np.float32)
    inner = Q.WeightOnlyMatrix(w * s[:, None], 4, axis=0, group_size=16).dequantize()
    np.testing.assert_allclose(x @ m, (x / s) @ inner, rtol=1e-5, atol=1e-5)  # the tile product's rounding
    np.testing.assert_allclose(m.dequantize(), inner / s[:, None], rtol=1e-6)


def test_gptq_and_awq_recipes_run_on_a_model_and_need_their_statistics(rng):
    model, cfg = tiny_model(rng)
    ids = rng.integers(0, cfg.vocab_size, 40)
    plain = quality.record_activations(model, ids, window=20)
    full = quality.record_activations(model, ids, window=20, hessian=True, keep_rows=32)
    with pytest.raises(ValueError, match="hessian=True"):
        C.compress(model.params, "gptq", recorders=plain)
    with pytest.raises(ValueError, match="keep_rows"):
        C.compress(model.params, "awq", recorders=plain)
    for method in ("gptq", "awq"):
        out = C.compress(model.params, method, recorders=full, bits=4, group_size=8)
        logits = llama_logits(out, ids[None, :20], cfg)[0]
        assert np.all(np.isfinite(logits)) and sorted(tn.core.flatten(out)) == sorted(tn.core.flatten(model.params))
