"""Pruning: each mask keeps what its rule says, at the sparsity asked; heads' gate gradients match finite
differences of the loss."""

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from helpers import randn
from hypothesis import given
from hypothesis import strategies as st

import transformer_np as tn
from transformer_np.efficient import prune as P

weights = hnp.arrays(np.float64, st.tuples(st.sampled_from([4, 8, 12]), st.integers(1, 6)),
                     elements=st.floats(-10, 10, allow_nan=False))
fractions = st.sampled_from([0.0, 0.25, 0.5, 0.75])


@given(weights, fractions)
def test_magnitude_mask_drops_the_smallest_at_the_sparsity_asked(w, p):
    keep = P.magnitude_mask(w, p)
    assert keep.shape == w.shape and keep.dtype == bool
    assert (~keep).sum() == round(p * w.size)
    if keep.any() and (~keep).any():
        assert np.abs(w[keep]).min() >= np.abs(w[~keep]).max()


def test_global_masks_share_one_threshold(rng):
    ws = {"a": randn(rng, 8, 8), "b": randn(rng, 4, 16) * 10}  # b's weights are larger: it loses fewer
    masks = P.global_magnitude_masks(ws, 0.5)
    total = sum(m.size for m in masks.values())
    assert sum((~m).sum() for m in masks.values()) == total // 2
    kept = np.concatenate([np.abs(ws[k][m]) for k, m in masks.items()])
    dropped = np.concatenate([np.abs(ws[k][~m]) for k, m in masks.items()])
    assert kept.min() > dropped.max()
    assert (~masks["a"]).mean() > 0.5 > (~masks["b"]).mean()


@given(weights, st.sampled_from([(2, 4), (1, 4), (3, 4), (1, 2)]))
def test_n_m_mask_keeps_the_n_largest_of_every_run_of_m(w, nm):
    n, m = nm
    keep = P.n_m_mask(w, n, m)
    runs, kept = np.abs(w).reshape(-1, m, w.shape[1]), keep.reshape(-1, m, w.shape[1])
    assert np.all(kept.sum(axis=1) == n)
    for r in range(runs.shape[0]):
        for j in range(w.shape[1]):
            if 0 < n < m:
                assert runs[r, kept[r, :, j], j].min() >= runs[r, ~kept[r, :, j], j].max()


@given(weights, fractions)
def test_wanda_mask_prunes_each_output_column_alike(w, p):
    rng = np.random.default_rng(0)
    x_norm = rng.uniform(0.1, 10, w.shape[0])
    keep = P.wanda_mask(w, x_norm, p)
    assert np.all((~keep).sum(axis=0) == round(p * w.shape[0]))
    score = np.abs(w) * x_norm[:, None]
    for j in range(w.shape[1]):
        if keep[:, j].any() and (~keep[:, j]).any():
            assert score[keep[:, j], j].min() >= score[~keep[:, j], j].max()


def test_wanda_with_equal_input_norms_is_per_output_magnitude(rng):
    w = randn(rng, 8, 5)
    keep = P.wanda_mask(w, np.ones(8), 0.5)
    for j in range(5):
        assert np.array_equal(keep[:, j], P.magnitude_mask(w[:, j:j + 1], 0.5)[:, 0])


def test_apply_masks_keeps_shapes_and_zeroes_only_the_masked(rng):
    params = {"a": {"w": randn(rng, 4, 4), "b": randn(rng, 4)}}
    mask = P.magnitude_mask(params["a"]["w"], 0.5)
    out = P.apply_masks(params, {"a/w": mask})
    assert out["a"]["w"].shape == (4, 4) and np.array_equal(out["a"]["w"] != 0, mask)
    assert out["a"]["b"] is params["a"]["b"]
    assert P.sparsity_of(out) == 0.5


def test_head_gate_gradient_equals_finite_difference_of_the_loss(rng):
    cfg = tn.TransformerConfig(d_model=16, n_heads=4, n_encoder_layers=2, n_decoder_layers=0, d_ff=16,
                               vocab_size=11, architecture="encoder-classifier", dtype="float64", dropout=0.0)
    params = tn.init_params(cfg, seed=2)
    ids, labels = rng.integers(0, 11, (3, 6)), rng.integers(0, 2, 3)
    _, grads = tn.model.classifier_loss(params, ids, labels, cfg)
    layer, D = 1, cfg.d_head
    w_o = params["encoder"]["layers"][layer]["self_attn"]["w_o"]
    analytic = P.head_gate_gradients(w_o, grads["encoder"]["layers"][layer]["self_attn"]["w_o"], cfg.n_heads)

    def loss_with_gate(h, xi):
        gated = w_o.copy()
        gated[P.head_rows(h, D)] *= xi
        params["encoder"]["layers"][layer]["self_attn"]["w_o"] = gated
        try:
            return tn.model.classifier_loss(params, ids, labels, cfg)[0]
        finally:
            params["encoder"]["layers"][layer]["self_attn"]["w_o"] = w_o

    numeric = [(loss_with_gate(h, 1 + 1e-6) - loss_with_gate(h, 1 - 1e-6)) / 2e-6 for h in range(cfg.n_heads)]
    np.testing.assert_allclose(analytic, numeric, atol=1e-8)


def test_pruned_heads_rows_are_zero_and_others_untouched(rng):
    w_o = randn(rng, 12, 5)
    out = P.head_mask_w_o(w_o, [0, 2], d_head=4)
    assert np.all(out[0:4] == 0) and np.all(out[8:12] == 0) and np.array_equal(out[4:8], w_o[4:8])


def test_bad_sparsity_and_shapes_are_rejected(rng):
    with pytest.raises(ValueError, match="sparsity"):
        P.magnitude_mask(randn(rng, 4, 4), 1.0)
    with pytest.raises(ValueError, match="C_in divisible by m=4, got C_in=6"):
        P.n_m_mask(randn(rng, 6, 4))


def test_ablation_importance_is_the_loss_change_of_removing_each_head(rng):
    cfg = tn.TransformerConfig(d_model=8, n_heads=2, n_encoder_layers=1, n_decoder_layers=0, d_ff=8, vocab_size=7,
                               architecture="encoder-classifier", dtype="float64", dropout=0.0)
    params = tn.init_params(cfg, seed=3)
    ids, labels = rng.integers(0, 7, (4, 5)), rng.integers(0, 2, 4)
    loss = lambda p: tn.model.classifier_loss(p, ids, labels, cfg)[0]  # noqa: E731
    path = "encoder/layers/0/self_attn/w_o"
    imp = P.head_ablation_importance(loss, params, [path], cfg.n_heads, cfg.d_head)
    w_o = params["encoder"]["layers"][0]["self_attn"]["w_o"]
    for h in range(2):
        params["encoder"]["layers"][0]["self_attn"]["w_o"] = P.head_mask_w_o(w_o, [h], cfg.d_head)
        want = loss(params)
        params["encoder"]["layers"][0]["self_attn"]["w_o"] = w_o
        assert abs(imp[0, h] - (want - loss(params))) < 1e-12


def test_gate_importance_averages_absolute_gate_gradients(rng):
    params = {"w_o": randn(rng, 6, 3)}
    grads = [{"w_o": randn(rng, 6, 3)} for _ in range(3)]
    got = P.head_gate_importance(params, iter(grads), ["w_o"], 2)
    want = np.mean([np.abs(P.head_gate_gradients(params["w_o"], g["w_o"], 2)) for g in grads], axis=0)
    np.testing.assert_allclose(got[0], want, atol=1e-12)


def test_masks_on_torch_tensors_equal_the_numpy_masks(rng):
    torch = pytest.importorskip("torch")
    w, x_norm = randn(rng, 16, 6), rng.uniform(0.1, 3, 16)
    tw = torch.from_numpy(w)
    for got, want in ((P.magnitude_mask(tw, 0.5), P.magnitude_mask(w, 0.5)),
                      (P.n_m_mask(tw, 2, 4), P.n_m_mask(w, 2, 4)),
                      (P.wanda_mask(tw, torch.from_numpy(x_norm), 0.25), P.wanda_mask(w, x_norm, 0.25))):
        assert isinstance(got, torch.Tensor) and got.dtype == torch.bool
        assert np.array_equal(got.numpy(), want)
    pruned = P.head_mask_w_o(tw, [0, 2], d_head=4)
    assert isinstance(pruned, torch.Tensor) and np.array_equal(pruned.numpy(), P.head_mask_w_o(w, [0, 2], 4))


def test_ranking_loss_and_its_gradients_match_the_formula_and_finite_differences(rng):
    from transformer_np.model.stacks import encoder
    from transformer_np.pretrained.minilm import ranking_loss

    # a BERT-like stack (post-LN, exact GELU) in float64; 3 pairs, padded rows
    cfg = tn.TransformerConfig(d_model=8, n_heads=2, n_encoder_layers=2, n_decoder_layers=0, d_ff=12, vocab_size=5,
                               activation="gelu", norm_first=False, final_norm=False, dtype="float64", dropout=0.0)
    p = tn.init_params(cfg, seed=4)["encoder"]
    x = randn(rng, 6, 5, 8)
    mask = np.ones((6, 5), np.int64)
    mask[1, 3:] = mask[4, 2:] = 0
    loss, grads = ranking_loss(x, mask, p, cfg, scale=3.0)

    def direct(p):
        h, _ = encoder(x, p, cfg, mask=(mask != 0)[:, None, None, :])
        e = (h * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
        u = e / np.linalg.norm(e, axis=1, keepdims=True)
        z = 3.0 * u[:3] @ u[3:].T
        return -np.mean(np.diag(z) - np.log(np.exp(z).sum(1)))

    assert loss == pytest.approx(direct(p), rel=1e-12)
    for name in ("w_o", "w_q"):
        w = p["layers"][0]["self_attn"][name]
        for i, j in [(0, 0), (3, 5), (7, 2)]:
            old = w[i, j]
            w[i, j] = old + 1e-6
            up = direct(p)
            w[i, j] = old - 1e-6
            down = direct(p)
            w[i, j] = old
            assert grads["layers"][0]["self_attn"][name][i, j] == pytest.approx((up - down) / 2e-6, abs=1e-8)


def test_prune_heads_zeroes_the_listed_heads_of_each_layer(rng):
    params = {"a": {"w_o": randn(rng, 8, 3)}, "b": {"w_o": randn(rng, 8, 3)}}
    out = P.prune_heads(params, ["a/w_o", "b/w_o"], [(0, 1), (1, 0), (1, 3)], d_head=2)
    np.testing.assert_array_equal(out["a"]["w_o"], P.head_mask_w_o(params["a"]["w_o"], [1], 2))
    np.testing.assert_array_equal(out["b"]["w_o"], P.head_mask_w_o(params["b"]["w_o"], [0, 3], 2))
    assert P.heads_by_importance(np.array([[3.0, 1.0], [0.5, 2.0]])) == [(1, 0), (0, 1), (1, 1), (0, 0)]
