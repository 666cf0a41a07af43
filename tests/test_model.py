"""Layers, stacks and the source document's model — equation, properties, torch oracle, bad input."""

import numpy as np
import pytest
from helpers import EQUATION_ATOL, TORCH_F32, TORCH_F64_ATOL, assert_close, randn

import transformer_np as tn
from transformer_np.core import reference as ref
from transformer_np.model import decoder_layer, encoder_layer

LAYER_OPTIONS = [dict(norm_first=nf, activation=a) for nf in (False, True) for a in ("relu", "gelu")]


def layer_id(o):
    return f"{'pre' if o['norm_first'] else 'post'}-{o['activation']}"


def tiny64(**kw):
    return tn.TransformerConfig.tiny(dtype="float64", **kw)


# --- (a) equation ------------------------------------------------------------------------------------
@pytest.mark.parametrize("options", LAYER_OPTIONS, ids=layer_id)
def test_encoder_layer_equals_loop_definition(options):
    cfg = tiny64(**options)
    p = tn.init_params(cfg, seed=1)["encoder"]["layers"][0]
    x = randn(np.random.default_rng(0), 2, 5, cfg.d_model)
    mask = tn.causal_mask(5)
    got, _ = encoder_layer(x, p, cfg, mask=mask)
    for b in range(2):
        assert_close(got[b], ref.loop_encoder_layer(x[b], p, cfg, mask), atol=EQUATION_ATOL)


@pytest.mark.parametrize("options", LAYER_OPTIONS, ids=layer_id)
def test_decoder_layer_equals_loop_definition(options):
    cfg = tiny64(**options)
    p = tn.init_params(cfg, seed=2)["decoder"]["layers"][0]
    r = np.random.default_rng(0)
    y, memory = randn(r, 2, 4, cfg.d_model), randn(r, 2, 6, cfg.d_model)
    cross = r.random((4, 6)) > 0.2
    got, (w_self, w_cross) = decoder_layer(y, memory, p, cfg, tn.causal_mask(4), cross)
    assert w_self.shape == (2, cfg.n_heads, 4, 4) and w_cross.shape == (2, cfg.n_heads, 4, 6)
    for b in range(2):
        want = ref.loop_decoder_layer(y[b], memory[b], p, cfg, tn.causal_mask(4), cross)
        assert_close(got[b], want, atol=EQUATION_ATOL)


# --- (b) properties ----------------------------------------------------------------------------------
def test_decoder_output_at_t_ignores_target_tokens_after_t():
    model = tn.Transformer.from_config(tn.TransformerConfig.tiny(dtype="float64"), seed=0)
    src, tgt = np.array([[1, 2, 3, 4]]), np.array([[5, 6, 7, 8, 9]])
    changed = tgt.copy()
    changed[0, 3:] = [1, 2]
    a, b = model(src, tgt), model(src, changed)
    np.testing.assert_allclose(a[0, :3], b[0, :3], atol=1e-12)
    assert not np.allclose(a[0, 3:], b[0, 3:])


def test_padding_tokens_do_not_change_other_positions():
    cfg = tn.TransformerConfig.tiny(dtype="float64", pad_id=0)
    model = tn.Transformer.from_config(cfg, seed=0)
    src, tgt = np.array([[3, 4, 5]]), np.array([[6, 7]])
    padded_src, padded_tgt = np.array([[3, 4, 5, 0, 0]]), np.array([[6, 7, 0]])
    np.testing.assert_allclose(model(padded_src, padded_tgt)[:, :2], model(src, tgt), atol=1e-12)


def test_post_ln_and_pre_ln_differ_and_both_are_finite():
    src, tgt = np.array([[1, 2, 3]]), np.array([[4, 5]])
    post = tn.Transformer.from_config(tn.TransformerConfig.tiny(), seed=0)(src, tgt)
    pre = tn.Transformer.from_config(tn.TransformerConfig.tiny(norm_first=True), seed=0)(src, tgt)
    assert np.all(np.isfinite(post)) and np.all(np.isfinite(pre))
    assert not np.allclose(post, pre)


def test_predict_proba_rows_sum_to_one():
    model = tn.Transformer(16, 4, 1, 11, d_ff=32, max_len=16)
    p = model.predict_proba(np.array([[1, 2]]), np.array([[3, 4, 5]]))
    assert p.shape == (1, 3, 11) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-6)


def test_forward_with_attention_returns_every_layers_maps():
    model = tn.Transformer.from_config(tn.TransformerConfig.tiny())
    logits, att = model.forward_with_attention(np.array([[1, 2, 3]]), np.array([[4, 5]]))
    assert logits.shape == (1, 2, 11)
    assert [w.shape for w in att["encoder"]] == [(1, 4, 3, 3)] * 2
    assert [w.shape for w in att["decoder_self"]] == [(1, 4, 2, 2)] * 2
    assert [w.shape for w in att["decoder_cross"]] == [(1, 4, 2, 3)] * 2
    np.testing.assert_array_equal(np.triu(att["decoder_self"][0][0, 0], 1), 0)  # causal by default


# --- (c) torch oracle on randomly drawn configurations -----------------------------------------------
def draw(seed):
    r = np.random.default_rng(seed)
    H = int(r.choice([1, 2, 4]))
    return r, dict(d_model=H * int(r.choice([2, 4])), nhead=H, dim_feedforward=int(r.integers(4, 24)),
                   dropout=0.0, activation=str(r.choice(["relu", "gelu"])), batch_first=bool(r.integers(2)),
                   norm_first=bool(r.integers(2)), layer_norm_eps=float(r.choice([1e-5, 1e-12])),
                   bias=seed % 3 != 0)  # every third configuration without biases (linear and layer norm)


def torch_masks(r, B, T, S, kind, dtype, causal=False):
    """(attn_mask, key_padding_mask) in torch's convention, with every query keeping one visible key."""
    if kind == "bool":
        attn, kpm = r.random((T, S)) > 0.7, r.random((B, S)) > 0.7
    else:
        attn = np.where(r.random((T, S)) > 0.7, -np.inf, r.standard_normal((T, S))).astype(dtype)
        kpm = np.where(r.random((B, S)) > 0.7, -np.inf, 0.0).astype(dtype)
    if causal:
        future = np.triu(np.ones((T, S), bool), 1)
        attn = future if kind == "bool" else np.where(future, -np.inf, 0).astype(dtype)
    attn[:, 0] = False if kind == "bool" else 0.0
    kpm[:, 0] = False if kind == "bool" else 0.0
    return attn, kpm


def layout(a, batch_first):
    return a if batch_first else np.swapaxes(a, 0, 1).copy()


def tolerance(dtype):
    return dict(atol=TORCH_F64_ATOL) if dtype == np.float64 else TORCH_F32


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_encoder_layer_matches_torch(seed, dtype):
    torch = pytest.importorskip("torch")
    from transformer_np import interop

    r, kw = draw(seed)
    torch.manual_seed(seed)
    layer = torch.nn.TransformerEncoderLayer(**kw, dtype=getattr(torch, np.dtype(dtype).name)).eval()
    B, S = int(r.integers(1, 4)), int(r.integers(1, 7))
    x = layout(r.standard_normal((B, S, kw["d_model"])).astype(dtype), kw["batch_first"])
    attn, kpm = torch_masks(r, B, S, S, ["bool", "float"][seed % 2], dtype)
    t = torch.from_numpy
    want = layer(t(x), src_mask=t(attn), src_key_padding_mask=t(kpm)).detach().numpy()
    got = interop.from_torch(layer)(x, src_mask=attn, src_key_padding_mask=kpm)
    assert got.dtype == dtype
    assert_close(got, want, **tolerance(dtype))


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_decoder_layer_matches_torch(seed, dtype):
    torch = pytest.importorskip("torch")
    from transformer_np import interop

    r, kw = draw(100 + seed)
    torch.manual_seed(seed)
    layer = torch.nn.TransformerDecoderLayer(**kw, dtype=getattr(torch, np.dtype(dtype).name)).eval()
    B, T, S = int(r.integers(1, 4)), int(r.integers(1, 6)), int(r.integers(1, 7))
    y = layout(r.standard_normal((B, T, kw["d_model"])).astype(dtype), kw["batch_first"])
    m = layout(r.standard_normal((B, S, kw["d_model"])).astype(dtype), kw["batch_first"])
    kind = ["bool", "float"][seed % 2]
    tgt_mask, tgt_kpm = torch_masks(r, B, T, T, kind, dtype, causal=True)
    mem_mask, mem_kpm = torch_masks(r, B, T, S, kind, dtype)
    args = dict(tgt_mask=tgt_mask, memory_mask=mem_mask, tgt_key_padding_mask=tgt_kpm,
                memory_key_padding_mask=mem_kpm)
    want = layer(torch.from_numpy(y), torch.from_numpy(m), **{k: torch.from_numpy(v) for k, v in args.items()})
    got = interop.from_torch(layer)(y, m, **args)
    assert_close(got, want.detach().numpy(), **tolerance(dtype))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nn_transformer_matches_torch(seed, dtype):
    torch = pytest.importorskip("torch")
    from transformer_np import interop

    r, kw = draw(200 + seed)
    torch.manual_seed(seed)
    model = torch.nn.Transformer(**kw, num_encoder_layers=int(r.integers(1, 3)),
                                 num_decoder_layers=int(r.integers(1, 3)),
                                 dtype=getattr(torch, np.dtype(dtype).name)).eval()
    B, T, S, C = int(r.integers(1, 4)), int(r.integers(1, 6)), int(r.integers(1, 7)), kw["d_model"]
    src = layout(r.standard_normal((B, S, C)).astype(dtype), kw["batch_first"])
    tgt = layout(r.standard_normal((B, T, C)).astype(dtype), kw["batch_first"])
    _, src_kpm = torch_masks(r, B, S, S, "bool", dtype)
    tgt_mask, _ = torch_masks(r, B, T, T, "bool", dtype, causal=True)
    t = torch.from_numpy
    want = model(t(src), t(tgt), tgt_mask=t(tgt_mask), src_key_padding_mask=t(src_kpm),
                 memory_key_padding_mask=t(src_kpm)).detach().numpy()
    got = interop.from_torch(model)(src, tgt, tgt_mask=tgt_mask, src_key_padding_mask=src_kpm,
                                    memory_key_padding_mask=src_kpm)
    assert_close(got, want, **tolerance(dtype))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_source_document_model_matches_torch(seed, dtype):
    torch = pytest.importorskip("torch")
    from transformer_np import interop

    r = np.random.default_rng(seed)
    torch.manual_seed(seed)
    H = int(r.choice([2, 4]))
    module = interop.source_model_torch()(H * 4, H, int(r.integers(1, 3)), 13, dim_feedforward=24, max_len=32,
                                          activation=str(r.choice(["relu", "gelu"])),
                                          norm_first=bool(seed % 2))
    module = module.to(getattr(torch, np.dtype(dtype).name)).eval()
    src, tgt = r.integers(0, 13, size=(2, 7)), r.integers(0, 13, size=(2, 5))
    want = module(torch.from_numpy(src), torch.from_numpy(tgt)).detach().numpy()
    model = interop.from_torch(module)
    got = model(src, tgt)
    assert got.shape == (2, 5, 13) and got.dtype == dtype
    assert_close(got, want, **tolerance(dtype))
    # the NumPy Transformer itself, with our mask convention, gives the same logits
    assert_close(model.model(src, tgt), want, **tolerance(dtype))


# --- the source model's API and its fixed bugs ---------------------------------------------------------
def test_source_model_constructor_and_call_match_the_listing():
    model = tn.Transformer(d_model=32, nhead=4, num_layers=2, num_classes=20, d_ff=64)
    assert model.config.n_encoder_layers == model.config.n_decoder_layers == 2
    out = model(np.array([[1, 2, 3]]), np.array([[4, 5]]), src_mask=None, tgt_mask=None, memory_mask=None)
    assert out.shape == (1, 2, 20) and out.dtype == np.float32


def test_target_tokens_are_embedded_so_changing_one_changes_the_output():
    model = tn.Transformer(16, 4, 1, 11, d_ff=32)
    a = model(np.array([[1, 2]]), np.array([[3]]))
    b = model(np.array([[1, 2]]), np.array([[4]]))
    assert not np.allclose(a, b)


def test_positions_matter_through_the_sin_cos_table():
    model = tn.Transformer(16, 4, 1, 11, d_ff=32)
    a = model(np.array([[1, 2, 3]]), np.array([[4]]))
    b = model(np.array([[3, 2, 1]]), np.array([[4]]))
    assert not np.allclose(a, b)  # a bag-of-words model would give equal outputs


def test_parameter_count_of_paper_base_matches_nn_transformer():
    torch = pytest.importorskip("torch")
    cfg = tn.TransformerConfig.paper_base(vocab_size=1000)
    core = torch.nn.Transformer()  # 512, 8 heads, 6+6, 2048
    expected = sum(p.numel() for p in core.parameters()) + 1000 * 512 + 512 * 1000 + 1000
    shapes = tn.model.param_shapes(cfg)
    assert tn.count_params(shapes) == expected


# --- bad input ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, message", [
    (dict(d_model=10, nhead=4), "d_model=10 must be divisible by n_heads=4"),
    (dict(nhead=0), "n_heads must be a positive integer, got 0"),
    (dict(num_classes=-3), "vocab_size must be a positive integer, got -3"),
    (dict(activation="tanh"), "activation must be one of"),
])
def test_bad_config_is_rejected(kwargs, message):
    args = dict(d_model=16, nhead=4, num_layers=1, num_classes=11) | kwargs
    with pytest.raises(ValueError, match=message):
        tn.Transformer(**args)


def test_bad_token_ids_and_lengths_are_rejected():
    model = tn.Transformer(16, 4, 1, 11, d_ff=32, max_len=8)
    with pytest.raises(ValueError, match=r"src must lie in \[0, 11\).*got values in \[-2, 3\]"):
        model(np.array([[-2, 3]]), np.array([[1]]))
    with pytest.raises(ValueError, match=r"tgt must lie in \[0, 11\)"):
        model(np.array([[2, 3]]), np.array([[11]]))
    with pytest.raises(TypeError, match="src must have an integer dtype"):
        model(np.array([[2.0, 3.0]]), np.array([[1]]))
    with pytest.raises(ValueError, match=r"src must be \(B, len\) with 1 <= len <= max_len=8, got shape \(1, 9\)"):
        model(np.ones((1, 9), int), np.array([[1]]))
    with pytest.raises(ValueError, match="src and tgt must share the batch size, got 2 and 1"):
        model(np.ones((2, 3), int), np.array([[1]]))
    with pytest.raises(TypeError, match="mask must be boolean"):
        model(np.ones((1, 3), int), np.array([[1]]), src_mask=np.ones((3, 3)))


def test_picogpt_style_peer_computes_our_encoder_up_to_the_tanh_gelu():
    # bench forward times this peer beside our encoder: it must be the same function (GELU's tanh form aside)
    from transformer_np.teaching import picogpt_style

    cfg = tn.TransformerConfig(d_model=16, n_heads=4, n_encoder_layers=2, n_decoder_layers=0, d_ff=32, vocab_size=1,
                               activation="gelu", norm_first=True, dtype="float64", dropout=0.0)
    params = tn.init_params(cfg, seed=5)["encoder"]
    x = randn(np.random.default_rng(5), 2, 7, 16)
    ours, _ = tn.model.stacks.encoder(x, params, cfg)
    theirs = picogpt_style.encoder(x, params, cfg)
    assert theirs.shape == ours.shape
    assert_close(theirs, ours, atol=5e-3)  # tanh GELU is within ~1e-3 of the exact form per activation
    assert not np.allclose(theirs, ours, atol=1e-9, rtol=0)  # and is not the exact one
    xs = np.linspace(-5, 5, 101)
    assert np.abs(picogpt_style.gelu_tanh(xs) - tn.core.nn.gelu(xs)).max() < 1e-3
