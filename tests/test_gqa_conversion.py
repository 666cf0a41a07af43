"""Multi-head -> grouped-query conversion: shapes and KV bytes, exactness where the heads of a group agree, the
gradients of grouped-query and multi-query models, and uptraining that runs on a shipped model."""

import numpy as np
import pytest

import transformer_np as tn
from transformer_np import decoding as g
from transformer_np.efficient.gqa import convert_and_uptrain, kv_cache_bytes_per_token, mha_to_gqa
from transformer_np.model.losses import transformer_loss
from transformer_np.training import load_trained


def model64(seed=0, **kw):
    cfg = tn.TransformerConfig.tiny(dtype="float64", **kw)
    return tn.init_params(cfg, seed), cfg


@pytest.mark.parametrize("n_kv", [1, 2, 4])
def test_converted_model_has_n_kv_heads_and_a_cache_h_over_n_kv_times_smaller(n_kv):
    params, cfg = model64()
    new, new_cfg = mha_to_gqa(params, cfg, n_kv)
    assert new_cfg.kv_heads == n_kv
    assert new["decoder"]["layers"][0]["self_attn"]["w_k"].shape == (16, n_kv * cfg.d_head)
    assert new["encoder"]["layers"][1]["self_attn"]["b_v"].shape == (n_kv * cfg.d_head,)
    assert kv_cache_bytes_per_token(cfg) // kv_cache_bytes_per_token(new_cfg) == cfg.n_heads // n_kv
    model = tn.Transformer.from_config(new_cfg, new)
    session = g.Seq2SeqSession(model, [[3, 4, 5]], bos_id=1)
    g.greedy(session, 4)
    layer = session.cache[0]
    assert layer.k.shape[1] == n_kv and layer.cross[0].shape[1] == n_kv  # only H_kv heads are cached


def test_conversion_to_as_many_kv_heads_is_the_identity():
    params, cfg = model64()
    new, new_cfg = mha_to_gqa(params, cfg, cfg.n_heads)
    src, tgt = np.array([[1, 2, 3]]), np.array([[4, 5]])
    assert new_cfg == cfg
    want = tn.Transformer.from_config(cfg, params)(src, tgt)
    assert np.array_equal(tn.Transformer.from_config(new_cfg, new)(src, tgt), want)


def test_conversion_is_exact_when_the_heads_of_each_group_agree():
    params, cfg = model64()
    D = cfg.d_head
    for stack in ("encoder", "decoder"):
        for layer in params[stack]["layers"]:
            for attn in [a for a in ("self_attn", "cross_attn") if a in layer]:
                for name in ("w_k", "w_v", "b_k", "b_v"):
                    a = layer[attn][name]
                    heads = a.reshape(*a.shape[:-1], cfg.n_heads, D)
                    layer[attn][name] = np.repeat(heads[..., ::2, :], 2, axis=-2).reshape(a.shape)  # pairs equal
    new, new_cfg = mha_to_gqa(params, cfg, 2)
    src, tgt = np.array([[1, 2, 3, 4]]), np.array([[5, 6, 7]])
    np.testing.assert_allclose(tn.Transformer.from_config(new_cfg, new)(src, tgt),
                               tn.Transformer.from_config(cfg, params)(src, tgt), atol=1e-12)


@pytest.mark.parametrize("n_kv", [1, 2])
def test_gradients_of_grouped_and_multi_query_models_match_finite_differences(n_kv):
    params, cfg = model64(seed=3, n_kv_heads=n_kv)
    src, tgt_in, tgt_out = np.array([[1, 2, 3]]), np.array([[1, 4, 5]]), np.array([[4, 5, 2]])
    _, grads = transformer_loss(params, src, tgt_in, tgt_out, cfg)
    rng = np.random.default_rng(0)
    for path in (("encoder", "layers", 0, "self_attn", "w_k"), ("decoder", "layers", 1, "cross_attn", "w_v"),
                 ("decoder", "layers", 0, "self_attn", "b_k")):
        leaf, grad = params, grads
        for key in path:
            leaf, grad = leaf[key], grad[key]
        for _ in range(3):
            i = tuple(rng.integers(0, n) for n in leaf.shape)
            old = leaf[i]
            leaf[i] = old + 1e-6
            up = transformer_loss(params, src, tgt_in, tgt_out, cfg)[0]
            leaf[i] = old - 1e-6
            down = transformer_loss(params, src, tgt_in, tgt_out, cfg)[0]
            leaf[i] = old
            assert grad[i] == pytest.approx((up - down) / 2e-6, abs=1e-6), (path, i)


def test_uptraining_runs_on_the_shipped_dates_model_and_reports_accuracies():
    task, params, _, _ = load_trained("dates")
    row = convert_and_uptrain(task, params, 2, steps=3, n_eval=20)
    assert row["original"] == 1.0 and 0.0 <= row["converted"] <= 1.0 and 0.0 <= row["uptrained"] <= 1.0
    assert row["kv_bytes_per_token"] == kv_cache_bytes_per_token(task.config) // 2


def test_bad_kv_head_counts_are_rejected():
    params, cfg = model64()
    with pytest.raises(ValueError, match="must divide n_heads=4"):
        mha_to_gqa(params, cfg, 3)
    with pytest.raises(ValueError, match="multiple of n_kv_heads"):
        tn.TransformerConfig.tiny(n_kv_heads=3)
