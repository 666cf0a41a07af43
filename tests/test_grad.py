"""Backward passes, each checked against central finite differences in float64 with a random "fake loss"
L = sum(out * dout), and against torch autograd on the same inputs."""

import numpy as np
import pytest
from helpers import numeric_grad, randn

import transformer_np as tn
from transformer_np.core import attention as att
from transformer_np.core import nn
from transformer_np.core.embeddings import token_embedding_backward

pytestmark = pytest.mark.check  # the math check tier: `make check` (see the Makefile)

FD_REL = 1e-6  # max |analytic - numeric| / max(max |numeric|, 1): relative, except for gradients that are
# exactly zero in theory (the key bias: softmax ignores a shift shared by a query's scores), where it is absolute


def assert_grad(analytic, f, x, name):
    num = numeric_grad(f, x)
    err = np.abs(analytic - num).max() / max(np.abs(num).max(), 1.0)
    assert err <= FD_REL, f"{name}: relative error {err:.2e}"


def test_linear_backward_matches_finite_differences(rng):
    x, w, b = randn(rng, 2, 3, 4), randn(rng, 4, 5), randn(rng, 5)
    dout = randn(rng, 2, 3, 5)
    dx, dw, db = nn.linear_backward(dout, x, w)
    loss = lambda: np.sum(nn.linear(x, w, b) * dout)  # noqa: E731
    for a, arr, name in ((dx, x, "x"), (dw, w, "w"), (db, b, "b")):
        assert_grad(a, loss, arr, name)


@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_activation_backward_matches_finite_differences(rng, activation):
    x = randn(rng, 4, 6)
    x[np.abs(x) < 1e-3] = 0.5  # keep away from ReLU's kink, where finite differences are meaningless
    dout = randn(rng, 4, 6)
    f = nn.activation_fn(activation)
    assert_grad(nn.activation_backward(activation)(dout, x), lambda: np.sum(f(x) * dout), x, activation)


def test_softmax_backward_matches_finite_differences_with_a_mask(rng):
    x, dout = randn(rng, 3, 5), randn(rng, 3, 5)
    mask = rng.random((3, 5)) > 0.3
    mask[:, 0] = True
    y = nn.softmax(x, mask=mask)
    dx = nn.softmax_backward(dout, y)
    assert np.all(dx[~mask] == 0)
    assert_grad(dx, lambda: np.sum(nn.softmax(x, mask=mask) * dout), x, "softmax")


def test_layer_norm_backward_matches_finite_differences(rng):
    x, g, b = randn(rng, 2, 3, 6) * 2 + 1, randn(rng, 6), randn(rng, 6)
    dout = randn(rng, 2, 3, 6)
    _, cache = nn.layer_norm_forward(x, g, b, 1e-5)
    dx, dg, db = nn.layer_norm_backward(dout, cache)
    loss = lambda: np.sum(nn.layer_norm(x, g, b, 1e-5) * dout)  # noqa: E731
    for a, arr, name in ((dx, x, "x"), (dg, g, "gamma"), (db, b, "beta")):
        assert_grad(a, loss, arr, name)


@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_feed_forward_backward_matches_finite_differences(rng, activation):
    x = randn(rng, 2, 3, 4)
    p = dict(w1=randn(rng, 4, 7), b1=randn(rng, 7), w2=randn(rng, 7, 4), b2=randn(rng, 4))
    dout = randn(rng, 2, 3, 4)
    _, cache = nn.feed_forward_forward(x, **p, activation=activation)
    dx, grads = nn.feed_forward_backward(dout, cache, **p, activation=activation)
    loss = lambda: np.sum(nn.feed_forward(x, **p, activation=activation) * dout)  # noqa: E731
    assert_grad(dx, loss, x, "x")
    for k in p:
        assert_grad(grads[k], loss, p[k], k)


def test_attention_backward_matches_finite_differences_with_a_causal_mask(rng):
    q, k, v = randn(rng, 2, 4, 3), randn(rng, 2, 4, 3), randn(rng, 2, 4, 5)
    dout, dw = randn(rng, 2, 4, 5), randn(rng, 2, 4, 4)
    mask = tn.causal_mask(4)
    out, w = tn.scaled_dot_product_attention(q, k, v, mask)
    dq, dk, dv = att.scaled_dot_product_attention_backward(dout, q, k, v, w, dweights=dw)

    def loss():
        o, ww = tn.scaled_dot_product_attention(q, k, v, mask)
        return np.sum(o * dout) + np.sum(ww * dw)

    for a, arr, name in ((dq, q, "q"), (dk, k, "k"), (dv, v, "v")):
        assert_grad(a, loss, arr, name)


def mha_params(rng, C):
    return {f"{kind}_{n}": randn(rng, C, C) if kind == "w" else randn(rng, C) for n in "qkvo" for kind in "wb"}


@pytest.mark.parametrize("cross", [False, True], ids=["self", "cross"])
def test_multi_head_attention_backward_matches_finite_differences(rng, cross):
    C, H = 6, 2
    x, mem = randn(rng, 2, 3, C), randn(rng, 2, 4, C)
    kv_in = mem if cross else x
    p = mha_params(rng, C)
    mask = None if cross else tn.causal_mask(3)
    dout = randn(rng, 2, 3, C)
    _, _, cache = att.multi_head_attention_forward(x, kv_in, kv_in, **p, n_heads=H, mask=mask)
    dx_q, dx_k, dx_v, grads = att.multi_head_attention_backward(dout, cache, **p, n_heads=H)

    def loss():
        kv = mem if cross else x
        return np.sum(tn.multi_head_attention(x, kv, kv, **p, n_heads=H, mask=mask)[0] * dout)

    if cross:
        assert_grad(dx_q, loss, x, "x")
        assert_grad(dx_k + dx_v, loss, mem, "memory")
    else:
        assert_grad(dx_q + dx_k + dx_v, loss, x, "x (used three times)")
    for name in p:
        assert_grad(grads[name], loss, p[name], name)
    np.testing.assert_allclose(grads["b_k"], 0, atol=1e-12)  # shifting every key by b_k changes no weight


def test_embedding_backward_adds_repeated_ids(rng):
    table, ids = randn(rng, 5, 3), np.array([[1, 4, 1], [0, 1, 2]])
    dout = randn(rng, 2, 3, 3)
    d = token_embedding_backward(dout, ids, 5)
    assert_grad(d, lambda: np.sum(tn.token_embedding(ids, table) * dout), table, "table")
    assert np.all(d[3] == 0)  # id 3 never appears


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_backward_matches_finite_differences_and_ignores_padding(rng, smoothing):
    logits, targets = randn(rng, 2, 4, 6), rng.integers(0, 6, size=(2, 4))
    targets[1, 2:] = 0  # padding, ignored
    loss, cache = nn.cross_entropy_forward(logits, targets, smoothing, ignore_index=0)
    d = nn.cross_entropy_backward(cache)
    assert np.all(d[1, 2:] == 0)
    assert_grad(d, lambda: nn.cross_entropy_forward(logits, targets, smoothing, ignore_index=0)[0], logits, "logits")


# --- torch autograd ------------------------------------------------------------------------------------
def test_gradients_equal_torch_autograd():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(0)
    C, H = 8, 2
    x, mem = randn(rng, 2, 3, C), randn(rng, 2, 5, C)
    p = mha_params(rng, C)
    dout = randn(rng, 2, 3, C)
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in p.items()}
    tx, tmem = torch.tensor(x, requires_grad=True), torch.tensor(mem, requires_grad=True)
    # cross-attention in torch, written out: our weights are (in, out)
    q = (tx @ tp["w_q"] + tp["b_q"]).view(2, 3, H, C // H).transpose(1, 2)
    k = (tmem @ tp["w_k"] + tp["b_k"]).view(2, 5, H, C // H).transpose(1, 2)
    v = (tmem @ tp["w_v"] + tp["b_v"]).view(2, 5, H, C // H).transpose(1, 2)
    a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(2, 3, C)
    out = a @ tp["w_o"] + tp["b_o"]
    (out * torch.tensor(dout)).sum().backward()
    _, _, cache = att.multi_head_attention_forward(x, mem, mem, **p, n_heads=H)
    dx_q, dx_k, dx_v, grads = att.multi_head_attention_backward(dout, cache, **p, n_heads=H)
    np.testing.assert_allclose(dx_q, tx.grad.numpy(), atol=1e-10)
    np.testing.assert_allclose(dx_k + dx_v, tmem.grad.numpy(), atol=1e-10)
    for name in p:
        np.testing.assert_allclose(grads[name], tp[name].grad.numpy(), atol=1e-10, err_msg=name)
    # layer norm, GELU and the cross-entropy with label smoothing and padding
    z, y = randn(rng, 3, 4, 7), rng.integers(1, 7, size=(3, 4))
    y[2, 1:] = 0
    tz = torch.tensor(z, requires_grad=True)
    F.cross_entropy(tz.view(-1, 7), torch.tensor(y).view(-1), ignore_index=0, label_smoothing=0.1).backward()
    loss, cache = nn.cross_entropy_forward(z, y, 0.1, ignore_index=0)
    np.testing.assert_allclose(float(loss), float(F.cross_entropy(torch.tensor(z).view(-1, 7),
                               torch.tensor(y).view(-1), ignore_index=0, label_smoothing=0.1)), atol=1e-12)
    np.testing.assert_allclose(nn.cross_entropy_backward(cache), tz.grad.numpy(), atol=1e-12)


# --- layers and whole models: every parameter, a few entries each ----------------------------------------
def check_tree(grads, params, loss, rng, per_leaf=3):
    """Finite differences on per_leaf random entries of every parameter array (all of them would take
    minutes), plus every entry of grads must exist with the parameter's shape."""
    from transformer_np.core.tree import flatten

    g, p = flatten(grads), flatten(params)
    assert g.keys() == p.keys()
    for name, arr in p.items():
        assert g[name].shape == arr.shape, name
        for _ in range(per_leaf):
            i = tuple(int(rng.integers(n)) for n in arr.shape)
            old = arr[i]
            arr[i] = old + 1e-6
            up = loss()
            arr[i] = old - 1e-6
            down = loss()
            arr[i] = old
            num = (up - down) / 2e-6
            assert abs(g[name][i] - num) <= FD_REL * max(abs(num), 1.0), f"{name}{i}: {g[name][i]} vs {num}"


LAYER_CFGS = [dict(norm_first=False, activation="relu"), dict(norm_first=True, activation="gelu")]


@pytest.mark.parametrize("options", LAYER_CFGS, ids=["post-relu", "pre-gelu"])
def test_encoder_layer_backward_matches_finite_differences(rng, options):
    from transformer_np.model.layers import encoder_layer_backward, encoder_layer_forward

    cfg = tn.TransformerConfig.tiny(dtype="float64", dropout=0.2, **options)
    p = tn.init_params(cfg, seed=1)["encoder"]["layers"][0]
    x, dout = randn(rng, 2, 5, 16), randn(rng, 2, 5, 16)
    mask = tn.padding_mask(np.array([5, 3]), max_len=5)
    forward = lambda: encoder_layer_forward(x, p, cfg, mask, rng=np.random.default_rng(9))  # noqa: E731
    out, _, cache = forward()
    dx, grads = encoder_layer_backward(dout, cache, p, cfg)
    loss = lambda: np.sum(forward()[0] * dout)  # noqa: E731 - the same dropout mask every call
    assert_grad(dx, loss, x, "x")
    check_tree(grads, p, loss, rng)


@pytest.mark.parametrize("options", LAYER_CFGS, ids=["post-relu", "pre-gelu"])
def test_decoder_layer_backward_matches_finite_differences(rng, options):
    from transformer_np.model.layers import decoder_layer_backward, decoder_layer_forward

    cfg = tn.TransformerConfig.tiny(dtype="float64", dropout=0.2, **options)
    p = tn.init_params(cfg, seed=2)["decoder"]["layers"][0]
    y, mem, dout = randn(rng, 2, 4, 16), randn(rng, 2, 6, 16), randn(rng, 2, 4, 16)
    forward = lambda: decoder_layer_forward(y, mem, p, cfg, tn.causal_mask(4),  # noqa: E731
                                            rng=np.random.default_rng(9))
    _, _, cache = forward()
    dy, dmem, grads = decoder_layer_backward(dout, cache, p, cfg)
    loss = lambda: np.sum(forward()[0] * dout)  # noqa: E731
    assert_grad(dy, loss, y, "y")
    assert_grad(dmem, loss, mem, "memory")
    check_tree(grads, p, loss, rng)


def seq2seq_batch(rng, cfg):
    src = rng.integers(3, cfg.vocab_size, size=(3, 6))
    src[1, 4:] = cfg.pad_id
    tgt = rng.integers(3, cfg.vocab_size, size=(3, 5))
    tgt[2, 3:] = cfg.pad_id
    return src, tgt[:, :-1], tgt[:, 1:]


@pytest.mark.parametrize("norm_first", [False, True], ids=["post-LN", "pre-LN"])
def test_whole_encoder_decoder_backward_matches_finite_differences(rng, norm_first):
    from transformer_np.model import transformer_loss

    cfg = tn.TransformerConfig.tiny(dtype="float64", pad_id=0, norm_first=norm_first)
    params = tn.init_params(cfg, seed=3)
    src, tgt_in, tgt_out = seq2seq_batch(rng, cfg)
    loss = lambda: transformer_loss(params, src, tgt_in, tgt_out, cfg, np.random.default_rng(5), 0.1)[0]  # noqa
    _, grads = transformer_loss(params, src, tgt_in, tgt_out, cfg, np.random.default_rng(5), 0.1)
    check_tree(grads, params, loss, rng, per_leaf=2)


def test_decoder_only_lm_and_classifier_backward_match_finite_differences(rng):
    from transformer_np.model import classifier_loss, lm_loss

    cfg = tn.TransformerConfig.lm_tiny(dtype="float64", pad_id=0)
    params = tn.init_params(cfg, seed=4)
    ids = rng.integers(1, cfg.vocab_size, size=(2, 6))
    ids[1, 4:] = 0
    loss = lambda: lm_loss(params, ids[:, :-1], ids[:, 1:], cfg, np.random.default_rng(1))[0]  # noqa: E731
    check_tree(lm_loss(params, ids[:, :-1], ids[:, 1:], cfg, np.random.default_rng(1))[1], params, loss, rng)

    cfg = tn.TransformerConfig.tiny(dtype="float64", pad_id=0, architecture="encoder-classifier",
                                    n_decoder_layers=0, n_classes=3)
    params = tn.init_params(cfg, seed=5)
    labels = np.array([0, 2])
    loss = lambda: classifier_loss(params, ids, labels, cfg, np.random.default_rng(1))[0]  # noqa: E731
    check_tree(classifier_loss(params, ids, labels, cfg, np.random.default_rng(1))[1], params, loss, rng)


def test_training_forward_without_dropout_equals_the_inference_forward(rng):
    from transformer_np.model import transformer_loss

    cfg = tn.TransformerConfig.tiny(dtype="float64", pad_id=0)
    params = tn.init_params(cfg, seed=3)
    src, tgt_in, tgt_out = seq2seq_batch(rng, cfg)
    logits = tn.Transformer.from_config(cfg, params)(src, tgt_in)
    want, _ = tn.core.nn.cross_entropy_forward(logits, tgt_out, 0.0, ignore_index=0)
    np.testing.assert_allclose(transformer_loss(params, src, tgt_in, tgt_out, cfg)[0], want, atol=1e-12)


def test_full_encoder_decoder_gradients_equal_torch_autograd(rng):
    torch = pytest.importorskip("torch")
    from transformer_np import interop
    from transformer_np.model import transformer_loss

    cfg = tn.TransformerConfig.tiny(dtype="float64", activation="gelu")
    model = tn.Transformer.from_config(cfg, seed=7)
    src, tgt = rng.integers(0, 11, size=(2, 6)), rng.integers(0, 11, size=(2, 5))
    module = interop.to_torch(model).train(False)
    logits = module(torch.from_numpy(src), torch.from_numpy(tgt[:, :-1]))
    torch.nn.functional.cross_entropy(logits.reshape(-1, 11), torch.from_numpy(tgt[:, 1:]).reshape(-1),
                                      label_smoothing=0.1).backward()
    for prm in module.parameters():  # a module holding the gradients, read back into our layout
        prm.data = prm.grad
    want = interop.from_torch(module).model.params
    _, grads = transformer_loss(model.params, src, tgt[:, :-1], tgt[:, 1:], cfg, label_smoothing=0.1)
    from transformer_np.core.tree import flatten

    g, w = flatten(grads), flatten(want)
    assert g.keys() == w.keys()
    for k in g:
        np.testing.assert_allclose(g[k], w[k], atol=1e-10, err_msg=k)


def test_residual_and_dropout_backward(rng):
    dy = randn(rng, 2, 3)
    dx, dfx = nn.residual_backward(dy)
    assert dx is dy and dfx is dy
    x, dout = randn(rng, 50, 40), randn(rng, 50, 40)
    y, cache = nn.dropout_forward(x, 0.25, np.random.default_rng(3))
    assert abs(np.mean(y == 0) - 0.25) < 0.02  # about a quarter dropped ...
    np.testing.assert_allclose(y[y != 0], x[y != 0] / 0.75)  # ... and the rest scaled by 1/(1-p)
    assert nn.dropout_forward(x, 0.25, None)[0] is x  # no generator (inference): the identity
    small = randn(rng, 3, 4)
    d = nn.dropout_backward(dout[:3, :4], nn.dropout_forward(small, 0.5, np.random.default_rng(4))[1])
    assert_grad(d, lambda: np.sum(nn.dropout_forward(small, 0.5, np.random.default_rng(4))[0] * dout[:3, :4]),
                small, "x")


@pytest.mark.parametrize("norm_first", [False, True], ids=["post-LN", "pre-LN"])
def test_encoder_layer_gradients_equal_torch_autograd(rng, norm_first):
    torch = pytest.importorskip("torch")
    from transformer_np import interop
    from transformer_np.core.tree import flatten
    from transformer_np.model.layers import encoder_layer_backward, encoder_layer_forward

    cfg = tn.TransformerConfig.tiny(dtype="float64", norm_first=norm_first, activation="gelu")
    p = tn.init_params(cfg, seed=6)["encoder"]["layers"][0]
    module = interop.to_torch(interop.TransformerEncoderLayer(p, cfg, batch_first=True))
    x, dout = randn(rng, 2, 5, 16), randn(rng, 2, 5, 16)
    tx = torch.tensor(x, requires_grad=True)
    (module(tx) * torch.from_numpy(dout)).sum().backward()
    for prm in module.parameters():
        prm.data = prm.grad
    want = interop.from_torch(module).params
    _, _, cache = encoder_layer_forward(x, p, cfg)
    dx, grads = encoder_layer_backward(dout, cache, p, cfg)
    np.testing.assert_allclose(dx, tx.grad.numpy(), atol=1e-10)
    g, w = flatten(grads), flatten(want)
    assert g.keys() == w.keys()
    for k in g:
        np.testing.assert_allclose(g[k], w[k], atol=1e-10, err_msg=k)


@pytest.mark.parametrize("kind", ["encoder-decoder", "decoder-only"])
def test_tied_embedding_gradients_match_finite_differences(kind):
    """With tie_embeddings the table is used twice (embedding and output layer): its gradient is the sum."""
    from transformer_np.model.losses import lm_loss, transformer_loss

    if kind == "encoder-decoder":
        cfg = tn.TransformerConfig.tiny(dtype="float64", tie_embeddings=True, d_model=8, n_heads=2, d_ff=8,
                                        n_encoder_layers=1, n_decoder_layers=1, vocab_size=7)
        args = (np.array([[1, 2, 3]]), np.array([[1, 4, 5]]), np.array([[4, 5, 2]]))
        loss_fn = transformer_loss
    else:
        cfg = tn.TransformerConfig.lm_tiny(dtype="float64", tie_embeddings=True, d_model=8, n_heads=2, d_ff=8,
                                           n_decoder_layers=1, vocab_size=7)
        args = (np.array([[1, 2, 3, 4]]), np.array([[2, 3, 4, 5]]))
        loss_fn = lm_loss
    params = tn.init_params(cfg, 2)
    assert "out" not in params
    _, grads = loss_fn(params, *args, cfg)
    table = params["embed"]["table"]
    numeric = numeric_grad(lambda: float(loss_fn(params, *args, cfg)[0]), table)
    np.testing.assert_allclose(grads["embed"]["table"], numeric, atol=1e-7)
