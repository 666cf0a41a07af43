"""The formulas a modern LLM adds — RMSNorm, SwiGLU, RoPE, grouped-query attention — each checked three ways:
against its loop-level version, by its properties, and against torch / Hugging Face on copied weights."""

import numpy as np
import pytest
from helpers import EQUATION_ATOL, assert_close, numeric_grad, randn, tiny_llama
from hypothesis import given
from hypothesis import strategies as st

import transformer_np as tn
from transformer_np.core import nn
from transformer_np.core import reference as ref
from transformer_np.core.attention import scaled_dot_product_attention_backward
from transformer_np.core.embeddings import rope, rope_backward
from transformer_np.pretrained.llama import LlamaConfig, llama_logits

pytestmark = pytest.mark.check  # the math check tier: `make check` (see the Makefile)


# --- RMSNorm -----------------------------------------------------------------------------------------------
def test_rms_norm_equals_loop_definition(rng):
    x, gamma = randn(rng, 5, 8), randn(rng, 8)
    assert_close(nn.rms_norm(x, gamma, 1e-5), ref.loop_rms_norm(x, gamma, 1e-5), atol=EQUATION_ATOL)


@given(st.floats(0.01, 100.0))
def test_rms_norm_ignores_the_scale_of_its_input(c):
    x = np.random.default_rng(0).standard_normal((3, 16))
    gamma = np.ones(16)
    y = nn.rms_norm(x, gamma, eps=0.0)
    np.testing.assert_allclose(nn.rms_norm(c * x, gamma, eps=0.0), y, rtol=1e-12)
    np.testing.assert_allclose(np.sqrt(np.mean(y * y, axis=-1)), 1.0, rtol=1e-12)  # unit root mean square


def test_rms_norm_backward_matches_finite_differences(rng):
    x, gamma, dy = randn(rng, 3, 6), randn(rng, 6), randn(rng, 3, 6)
    out, cache = nn.rms_norm_forward(x, gamma, 1e-5)
    dx, dgamma = nn.rms_norm_backward(dy, cache)
    loss = lambda: float(np.sum(nn.rms_norm(x, gamma, 1e-5) * dy))  # noqa: E731
    np.testing.assert_allclose(dx, numeric_grad(loss, x), atol=1e-7)
    np.testing.assert_allclose(dgamma, numeric_grad(loss, gamma), atol=1e-7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rms_norm_matches_torch(rng, dtype):
    torch = pytest.importorskip("torch")
    x, gamma = randn(rng, 4, 10, dtype=dtype), randn(rng, 10, dtype=dtype)
    want = torch.nn.functional.rms_norm(torch.from_numpy(x), (10,), torch.from_numpy(gamma), eps=1e-5)
    got = nn.rms_norm(x, gamma, 1e-5)
    assert got.dtype == dtype
    assert_close(got, want.numpy(), atol=1e-10 if dtype == np.float64 else 1e-6, rtol=1e-6)


# --- SwiGLU ------------------------------------------------------------------------------------------------
def test_swiglu_equals_loop_definition(rng):
    x, wg, wu, wd = randn(rng, 3, 4), randn(rng, 4, 6), randn(rng, 4, 6), randn(rng, 6, 4)
    assert_close(nn.swiglu(x, wg, wu, wd), ref.loop_swiglu(x, wg, wu, wd), atol=EQUATION_ATOL)


def test_swiglu_backward_matches_finite_differences(rng):
    x, wg, wu, wd, dy = randn(rng, 2, 3), randn(rng, 3, 5), randn(rng, 3, 5), randn(rng, 5, 3), randn(rng, 2, 3)
    _, cache = nn.swiglu_forward(x, wg, wu, wd)
    dx, grads = nn.swiglu_backward(dy, cache, wg, wu, wd)
    loss = lambda: float(np.sum(nn.swiglu(x, wg, wu, wd) * dy))  # noqa: E731
    np.testing.assert_allclose(dx, numeric_grad(loss, x), atol=1e-7)
    for name, w in (("w_gate", wg), ("w_up", wu), ("w_down", wd)):
        np.testing.assert_allclose(grads[name], numeric_grad(loss, w), atol=1e-7)


def test_swiglu_matches_hugging_face_llama_mlp(rng):
    torch = pytest.importorskip("torch")
    modeling = pytest.importorskip("transformers.models.llama.modeling_llama")
    from transformers import LlamaConfig as HFConfig

    mlp = modeling.LlamaMLP(HFConfig(hidden_size=8, intermediate_size=12, num_attention_heads=2,
                                     num_key_value_heads=2)).double().eval()
    x = randn(rng, 2, 3, 8)
    w = {k: v.detach().numpy().T for k, v in (("w_gate", mlp.gate_proj.weight), ("w_up", mlp.up_proj.weight),
                                                ("w_down", mlp.down_proj.weight))}  # torch stores Wᵀ
    with torch.no_grad():
        want = mlp(torch.from_numpy(x)).numpy()
    assert_close(nn.swiglu(x, **w), want, atol=1e-12)


# --- RoPE --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["pairs", "half"])
def test_rope_equals_loop_definition(rng, layout):
    x, pos = randn(rng, 5, 8), np.array([0, 1, 2, 7, 100])
    assert_close(rope(x, pos, 500.0, layout), ref.loop_rope(x, pos, 500.0, layout), atol=EQUATION_ATOL)


@given(st.integers(0, 5000), st.integers(0, 5000), st.integers(-50, 50))
def test_rope_scores_depend_only_on_the_offset_between_positions(m, n, shift):
    q, k = np.random.default_rng(1).standard_normal((2, 1, 16))
    def score(a, b):  # noqa: E306
        return float((rope(q, np.array([a]), 10000.0) @ rope(k, np.array([b]), 10000.0).T)[0, 0])
    shift = max(shift, -min(m, n))
    assert score(m, n) == pytest.approx(score(m + shift, n + shift), abs=1e-9)


def test_rope_is_a_rotation_and_its_inverse_undoes_it(rng):
    x, pos = randn(rng, 2, 3, 6, 8), np.arange(6)
    y = rope(x, pos, 10000.0)
    np.testing.assert_allclose(np.linalg.norm(y, axis=-1), np.linalg.norm(x, axis=-1), rtol=1e-12)
    np.testing.assert_allclose(rope_backward(y, pos, 10000.0), x, atol=1e-12)


def test_rope_layouts_agree_after_permuting_the_features(rng):
    """GGUF's 'pairs' rotation on permuted features is Hugging Face's 'half' rotation: the permutation that
    llama.cpp applies to q/k weights (feature 2i <- i, 2i+1 <- i + D/2) maps one onto the other."""
    D = 8
    x, pos = randn(rng, 4, D), np.array([0, 3, 9, 40])
    perm = np.ravel(np.column_stack([np.arange(D // 2), np.arange(D // 2) + D // 2]))  # [0, 4, 1, 5, 2, 6, 3, 7]
    assert_close(rope(x[:, perm], pos, 10000.0, "pairs"), rope(x, pos, 10000.0, "half")[:, perm], atol=1e-12)


def test_rope_positions_per_row_rotate_each_row_at_its_own_positions(rng):
    x = randn(rng, 2, 3, 4, 8)  # (B, H, T, D)
    pos = np.array([[0, 1, 2, 3], [5, 6, 7, 8]])
    got = rope(x, pos, 10000.0)
    for b in range(2):
        assert_close(got[b], rope(x[b], pos[b], 10000.0), atol=1e-12)


def test_rope_matches_hugging_face_apply_rotary_pos_emb(rng):
    torch = pytest.importorskip("torch")
    modeling = pytest.importorskip("transformers.models.llama.modeling_llama")
    from transformers import LlamaConfig as HFConfig

    cfg = HFConfig(hidden_size=16, num_attention_heads=2, rope_theta=500.0)
    emb = modeling.LlamaRotaryEmbedding(cfg)
    q, k = randn(rng, 1, 2, 5, 8), randn(rng, 1, 2, 5, 8)
    pos = np.array([[0, 1, 2, 10, 11]])
    cos, sin = emb(torch.from_numpy(q), torch.from_numpy(pos))
    want_q, want_k = modeling.apply_rotary_pos_emb(torch.from_numpy(q), torch.from_numpy(k), cos, sin)
    assert_close(rope(q, pos, 500.0, "half"), want_q.numpy(), atol=1e-6)  # HF computes the angles in float32
    assert_close(rope(k, pos, 500.0, "half"), want_k.numpy(), atol=1e-6)


# --- grouped-query attention ----------------------------------------------------------------------------------
@pytest.mark.parametrize("T", [1, 4])  # one query (a decode step: matrix-vector products) or several (stacked)
def test_grouped_query_attention_equals_loop_definition(rng, T):
    q, k, v = randn(rng, 6, T, 5), randn(rng, 2, 7, 5), randn(rng, 2, 7, 3)
    mask = np.tril(np.ones((T, 7), bool), 3)
    out, w = tn.scaled_dot_product_attention(q, k, v, mask=mask)
    want_out, want_w = ref.loop_grouped_query_attention(q, k, v, mask)
    assert_close(out, want_out, atol=EQUATION_ATOL)
    assert_close(w, want_w, atol=EQUATION_ATOL)


def test_grouped_query_attention_is_multi_head_attention_with_repeated_kv_heads(rng):
    q, k, v = randn(rng, 2, 9, 4, 8), randn(rng, 2, 3, 6, 8), randn(rng, 2, 3, 6, 8)
    got, _ = tn.scaled_dot_product_attention(q, k, v)
    want, _ = tn.scaled_dot_product_attention(q, np.repeat(k, 3, axis=1), np.repeat(v, 3, axis=1))
    assert_close(got, want, atol=1e-14)


def test_multi_head_attention_with_n_kv_heads_projects_fewer_keys(rng):
    C, H, H_kv = 12, 6, 2
    D = C // H
    p = {"w_q": randn(rng, C, C), "b_q": None, "w_k": randn(rng, C, H_kv * D), "b_k": None,
         "w_v": randn(rng, C, H_kv * D), "b_v": None, "w_o": randn(rng, C, C), "b_o": None}
    x = randn(rng, 2, 5, C)
    out, w = tn.multi_head_attention(x, x, x, **p, n_heads=H, n_kv_heads=H_kv)
    rep = lambda m: np.repeat(m.reshape(C, H_kv, D), H // H_kv, axis=1).reshape(C, C)  # noqa: E731
    want, _ = tn.multi_head_attention(x, x, x, **{**p, "w_k": rep(p["w_k"]), "w_v": rep(p["w_v"])}, n_heads=H)
    assert out.shape == (2, 5, C) and w.shape == (2, H, 5, 5)
    assert_close(out, want, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_grouped_query_attention_and_its_backward_match_torch(rng, dtype):
    torch = pytest.importorskip("torch")
    q, k, v, d = (randn(rng, *s, dtype=dtype) for s in ((2, 6, 4, 8), (2, 2, 5, 8), (2, 2, 5, 3), (2, 6, 4, 3)))
    mask = rng.random((4, 5)) > 0.3
    mask[:, 0] = True
    out, w = tn.scaled_dot_product_attention(q, k, v, mask=mask)
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    want = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, attn_mask=torch.from_numpy(mask),
                                                            enable_gqa=True)
    (want * torch.from_numpy(d)).sum().backward()
    tol = dict(atol=1e-10) if dtype == np.float64 else dict(atol=1e-5, rtol=1e-5)
    assert out.dtype == dtype
    assert_close(out, want.detach().numpy(), **tol)
    for got, ref_grad in zip(scaled_dot_product_attention_backward(d, q, k, v, w), (tq, tk, tv)):
        assert_close(got, ref_grad.grad.numpy(), **tol)


def test_query_heads_that_do_not_divide_into_kv_heads_are_an_error(rng):
    with pytest.raises(ValueError, match="head count does not divide"):
        tn.scaled_dot_product_attention(randn(rng, 1, 5, 2, 4), randn(rng, 1, 2, 3, 4), randn(rng, 1, 2, 3, 4))


# --- the Llama block and model on random weights: the KV cache equals the plain path --------------------------
def test_llama_kv_cache_decoding_equals_the_full_forward_pass(rng):
    from transformer_np.decoding.cache import new_cache

    params, cfg = tiny_llama(rng)
    ids = rng.integers(0, 19, (2, 9))
    full, _ = llama_logits(params, ids, cfg)
    cache = new_cache(cfg.n_layers)
    steps = [llama_logits(params, ids[:, :4], cfg, cache=cache)[0]]
    steps += [llama_logits(params, ids[:, t:t + 1], cfg, cache=cache)[0] for t in range(4, 9)]
    assert_close(np.concatenate(steps, axis=1), full, atol=1e-12)
    assert cache[0].k.shape == (2, cfg.n_kv_heads, 9, cfg.d_head)  # H_kv heads cached, not H


def test_llama_block_with_half_layout_and_permuted_weights_equals_pairs_layout(rng):
    """The permutation llama.cpp applies to q/k weights when it writes a GGUF file, undone as Hugging Face
    undoes it: the model then needs the 'half' RoPE layout and gives the same logits."""
    params, cfg = tiny_llama(rng)
    D = cfg.d_head
    perm = np.ravel(np.column_stack([np.arange(D // 2), np.arange(D // 2) + D // 2]))
    inverse = np.argsort(perm)

    def unpermute(w, heads):  # columns of each head in pairs order -> half order
        return w.reshape(w.shape[0], heads, D)[:, :, inverse].reshape(w.shape)

    half = {**params, "decoder": {"layers": [
        {**lp, "attn": {**lp["attn"], "w_q": unpermute(lp["attn"]["w_q"], cfg.n_heads),
                        "w_k": unpermute(lp["attn"]["w_k"], cfg.n_kv_heads)}} for lp in params["decoder"]["layers"]]}}
    ids = rng.integers(0, 19, (1, 7))
    import dataclasses

    want, _ = llama_logits(params, ids, cfg)
    got, _ = llama_logits(half, ids, dataclasses.replace(cfg, rope_layout="half"))
    assert_close(got, want, atol=1e-12)


def test_kv_cache_bytes_per_token_of_smollm2_is_46080_in_float32():
    cfg = LlamaConfig()  # the defaults are SmolLM2-135M's shape
    assert cfg.kv_cache_bytes_per_token() == 2 * 30 * 3 * 64 * 4 == 46_080
    assert cfg.kv_cache_bytes_per_token() * cfg.n_heads // cfg.n_kv_heads == 138_240  # multi-head would need 3×


@pytest.mark.parametrize("kw, message", [
    (dict(n_kv_heads=4), "groups of n_kv_heads"), (dict(rope_base=1.0), "rope_base"),
    (dict(rope_layout="interleaved"), "rope_layout"), (dict(n_layers=0), "n_layers")])
def test_bad_llama_config_is_rejected(kw, message):
    with pytest.raises(ValueError, match=message):
        LlamaConfig(**kw)


def test_last_only_logits_equal_the_last_row_of_all_logits(rng):
    params, cfg = tiny_llama(rng)
    ids = rng.integers(0, 19, (2, 6))
    assert_close(llama_logits(params, ids, cfg, last_only=True)[0], llama_logits(params, ids, cfg)[0][:, -1:],
                 atol=1e-12)
    lm = tn.DecoderLM(tn.TransformerConfig.lm_tiny(dtype="float64"))
    assert_close(lm.step(ids % 11, last_only=True), lm(ids % 11)[:, -1:], atol=1e-12)


@pytest.mark.parametrize("bad", [[1.7, 2.2], [True, False], ["3", "4"], [1, 19]])
def test_llama_logits_refuse_what_is_not_a_token_id_by_name(rng, bad):
    """Before: logits([1.7, 2.2]) equalled logits([1, 2]) (the ids were cast to int64)."""
    from transformer_np.pretrained.llama import LlamaModel

    params, cfg = tiny_llama(rng)
    with pytest.raises((TypeError, ValueError), match=r"ids\[0\]"):
        LlamaModel(params, cfg, tokenizer=None).logits(bad)


def test_llama_generate_names_a_negative_seed(rng):
    from transformer_np.pretrained.llama import LlamaModel

    params, cfg = tiny_llama(rng)
    with pytest.raises(ValueError, match="seed must be an integer >= 0, got -1"):
        LlamaModel(params, cfg, tokenizer=None).generate([1, 2], 2, temperature=1.0, seed=-1)


# --- attention by tiles in the model's forward (core.blockwise.attention) -----------------------------------
@pytest.fixture
def small_tiles(monkeypatch):
    """Tiles of 4 × 4, so the tiny model's inputs span several of them."""
    from transformer_np.core import blockwise

    monkeypatch.setattr(blockwise, "BLOCK", 4)


def test_llama_logits_with_blockwise_attention_equal_the_plain_path(rng, small_tiles):
    params, cfg = tiny_llama(rng)
    ids = rng.integers(0, 19, (2, 13))
    key_mask = np.ones((2, 1, 1, 13), dtype=bool)
    key_mask[1, ..., :5] = False  # the second row left-padded by 5
    want, _ = llama_logits(params, ids, cfg, key_mask=key_mask, attention="plain")
    got, _ = llama_logits(params, ids, cfg, key_mask=key_mask, attention="blockwise")
    assert_close(got, want, atol=1e-12)
    assert np.isfinite(got).all()  # the padded queries see no key before position 5 in some tiles: 0, not NaN


def test_a_blockwise_prefill_in_chunks_then_decoding_equals_the_plain_forward(rng, small_tiles):
    from transformer_np.decoding.cache import new_cache

    params, cfg = tiny_llama(rng)
    ids = rng.integers(0, 19, (1, 14))
    full, _ = llama_logits(params, ids, cfg, attention="plain")
    cache = new_cache(cfg.n_layers)
    steps = [llama_logits(params, ids[:, :6], cfg, cache=cache, attention="blockwise")[0],
             llama_logits(params, ids[:, 6:11], cfg, cache=cache, attention="blockwise")[0]]  # past 6, T 5
    steps += [llama_logits(params, ids[:, t:t + 1], cfg, cache=cache, attention="blockwise")[0] for t in (11, 12, 13)]
    assert_close(np.concatenate(steps, axis=1), full, atol=1e-12)


def test_auto_attention_tiles_exactly_when_the_scores_pass_the_threshold(rng, monkeypatch):
    from transformer_np.core import blockwise

    q, k, v = randn(rng, 1, 4, 8, 6), randn(rng, 1, 2, 8, 6), randn(rng, 1, 2, 8, 6)
    scores_bytes = 4 * 8 * 8 * 8  # (1, 4, 8, 8) float64
    monkeypatch.setattr(blockwise, "AUTO_SCORES_BYTES", scores_bytes)
    out, weights = blockwise.attention(q, k, v)
    assert weights is not None and weights.shape == (1, 4, 8, 8)  # at the threshold: plain, the weights formed
    monkeypatch.setattr(blockwise, "AUTO_SCORES_BYTES", scores_bytes - 1)
    tiled, none = blockwise.attention(q, k, v)
    assert none is None
    assert_close(tiled, out, atol=1e-12)


def test_llama_attention_path_is_checked_and_weights_need_the_plain_path(rng):
    from transformer_np.pretrained.llama import LlamaModel

    params, cfg = tiny_llama(rng)
    ids = rng.integers(0, 19, (1, 5))
    with pytest.raises(ValueError, match="attention must be one of .*got 'flash'"):
        LlamaModel(params, cfg, tokenizer=None, attention="flash")
    with pytest.raises(ValueError, match="need_weights=True needs attention='plain'"):
        llama_logits(params, ids, cfg, need_weights=True, attention="blockwise")
    model = LlamaModel(params, cfg, tokenizer=None, attention="blockwise")
    assert_close(model.logits(ids[0]), llama_logits(params, ids, cfg, attention="plain")[0][0], atol=1e-12)
    assert len(LlamaModel(params, cfg, tokenizer=None).attention(ids)) == cfg.n_layers  # auto: weights formed
