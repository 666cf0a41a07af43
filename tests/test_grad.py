"""Backward passes, each checked against central finite differences in float64 with a random "fake loss"
L = sum(out * dout), and against torch autograd on the same inputs."""

import numpy as np
import pytest
from conftest import randn

import transformer_np as tn
from transformer_np import attention as att
from transformer_np import nn
from transformer_np.embeddings import token_embedding_backward

FD_REL = 1e-6  # max |analytic - numeric| / max(max |numeric|, 1): relative, except for gradients that are
# exactly zero in theory (the key bias: softmax ignores a shift shared by a query's scores), where it is absolute


def numeric_grad(f, x, eps=1e-6):
    """Central differences of the scalar f() with respect to every entry of x (changed in place, restored)."""
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps
        up = f()
        x[i] = old - eps
        down = f()
        x[i] = old
        g[i] = (up - down) / (2 * eps)
    return g


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
