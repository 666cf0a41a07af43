"""One code path for every array library: each function returns arrays of its inputs' library and
device, equal to NumPy's within the dtype's tolerance.

Backends: numpy; array-api-strict on its non-default device (it raises on any hidden conversion to
NumPy, as CuPy does); torch tensors through array-api-compat; CuPy where a GPU exists.
"""

import numpy as np
import pytest
from helpers import randn

import transformer_np as tn
from transformer_np.core.backend import array_namespace, device
from transformer_np.core.tree import tree_map


def _strict():
    xps = pytest.importorskip("array_api_strict")
    dev = xps.Device("device1")
    return lambda a: xps.asarray(np.asarray(a), device=dev)


def _torch():
    torch = pytest.importorskip("torch")
    return lambda a: torch.from_numpy(np.ascontiguousarray(a))


def _cupy():
    cupy = pytest.importorskip("cupy", reason="CuPy is not installed (GPU only)")
    try:
        cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"no usable GPU: {e}")
    return cupy.asarray


MAKERS = {"numpy": lambda: np.asarray, "array_api_strict": _strict, "torch": _torch, "cupy": _cupy}


@pytest.fixture(params=list(MAKERS))
def to_xp(request):
    """Converts a NumPy array to the backend under test."""
    return MAKERS[request.param]()


def assert_same_backend_and_close(got, like, want, dtype):
    assert type(got) is type(like), f"result is {type(got).__name__}, inputs were {type(like).__name__}"
    assert array_namespace(got) is array_namespace(like)
    assert device(got) == device(like)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(tn.to_numpy(got), want, **tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_formulas_run_in_their_inputs_library(to_xp, dtype):
    rng = np.random.default_rng(0)
    x, w = randn(rng, 2, 5, 8, dtype=dtype), randn(rng, 8, 8, dtype=dtype)
    g, b = randn(rng, 8, dtype=dtype), randn(rng, 8, dtype=dtype)
    mask = tn.causal_mask(5)
    X = to_xp(x)
    cases = {
        "softmax": (tn.softmax(X), tn.softmax(x)),
        "masked softmax": (tn.softmax(X[:, :, :5], mask=to_xp(mask)), tn.softmax(x[:, :, :5], mask=mask)),
        "log_softmax": (tn.log_softmax(X), tn.log_softmax(x)),
        "layer_norm": (tn.layer_norm(X, to_xp(g), to_xp(b)), tn.layer_norm(x, g, b)),
        "gelu": (tn.gelu(X), tn.gelu(x)),
        "relu": (tn.relu(X), tn.relu(x)),
        "linear": (tn.linear(X, to_xp(w), to_xp(b)), tn.linear(x, w, b)),
        "attention": (tn.scaled_dot_product_attention(X, X, X, to_xp(mask))[0],
                      tn.scaled_dot_product_attention(x, x, x, mask)[0]),
        "positional encoding": (tn.sinusoidal_positional_encoding(5, 8, like=X),
                                tn.sinusoidal_positional_encoding(5, 8, dtype=dtype)),
    }
    for name, (got, want) in cases.items():
        assert got.dtype == X.dtype, name
        assert_same_backend_and_close(got, X, want, dtype)


def test_masks_are_built_in_the_requested_library(to_xp):
    like = to_xp(np.zeros(3))
    assert_same_backend_and_close(tn.causal_mask(3, like=like), like, np.tril(np.ones((3, 3), bool)), np.float64)
    lengths = to_xp(np.array([1, 3]))
    got = tn.padding_mask(lengths, max_len=3)
    assert type(got) is type(lengths)
    assert np.array_equal(tn.to_numpy(got), tn.padding_mask(np.array([1, 3]), max_len=3))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_whole_model_runs_in_its_params_library(to_xp, dtype):
    cfg = tn.TransformerConfig.tiny(dtype=dtype, pad_id=0, activation="gelu")
    params = tn.init_params(cfg, seed=0)
    src, tgt = np.array([[3, 4, 5, 0], [1, 2, 3, 4]]), np.array([[6, 7, 0], [8, 9, 10]])
    want = tn.Transformer.from_config(cfg, params)(src, tgt)
    moved = tn.Transformer.from_config(cfg, tree_map(to_xp, params))
    got = moved(to_xp(src), to_xp(tgt))
    assert_same_backend_and_close(got, to_xp(want), want, np.dtype(dtype).type)


def test_token_ids_out_of_range_are_caught_in_every_library(to_xp):
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 4\)"):
        tn.token_embedding(to_xp(np.array([[1, -1]])), to_xp(np.zeros((4, 2))))


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_to_backend_moves_every_leaf_and_to_numpy_brings_it_back(backend):
    if backend == "torch":
        pytest.importorskip("torch")
    params = tn.init_params(tn.TransformerConfig.tiny())
    moved = tn.to_backend(params, backend)
    leaves = tn.core.flatten(moved)
    assert all(array_namespace(v) is array_namespace(leaves["out/b"]) for v in leaves.values())
    back = tree_map(tn.to_numpy, moved)
    flat = tn.core.flatten(params)
    assert all(np.array_equal(tn.core.flatten(back)[k], flat[k]) for k in flat)


def test_unknown_backend_is_rejected():
    with pytest.raises(ValueError, match=r"backend must be one of \('numpy', 'torch', 'cupy'\), got 'jax'"):
        tn.to_backend({}, "jax")


def test_asking_for_cupy_without_it_says_how_to_get_it():
    try:
        import cupy  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match=r"pip install 'transformer_np\[gpu\]'"):
            tn.to_backend({}, "cupy")
    else:
        pytest.skip("CuPy is installed here")


def test_to_backend_moves_a_whole_model():
    torch = pytest.importorskip("torch")
    model = tn.Transformer.from_config(tn.TransformerConfig.tiny())
    moved = tn.to_backend(model, "torch")
    assert isinstance(moved, tn.Transformer) and isinstance(moved.params["out"]["w"], torch.Tensor)
    assert isinstance(model.params["out"]["w"], np.ndarray)  # the original is untouched
    src, tgt = np.array([[1, 2]]), np.array([[3]])
    np.testing.assert_allclose(moved(torch.from_numpy(src), torch.from_numpy(tgt)).numpy(), model(src, tgt),
                               rtol=1e-5, atol=1e-5)


def test_checkpoint_saved_from_any_backend_loads_as_numpy(to_xp, tmp_path):
    cfg = tn.TransformerConfig.tiny()
    params = tn.init_params(cfg, seed=4)
    tn.save_checkpoint(tmp_path / "m.npz", tree_map(to_xp, params), cfg)
    loaded, loaded_cfg = tn.load_checkpoint(tmp_path / "m.npz")
    assert loaded_cfg == cfg
    flat, want = tn.core.flatten(loaded), tn.core.flatten(params)
    assert all(isinstance(flat[k], np.ndarray) and np.array_equal(flat[k], want[k]) for k in want)


@pytest.mark.parametrize("kind", ["decoder-only", "encoder-decoder"])
def test_cached_generation_runs_in_the_params_library(to_xp, kind):
    from transformer_np import decoding as g

    if kind == "decoder-only":
        cfg = tn.TransformerConfig.lm_tiny(dtype="float64")
        make = lambda m: g.LMSession(m, [[1, 2, 3], [4, 5]])  # noqa: E731
        model = tn.DecoderLM(cfg, seed=0)
    else:
        cfg = tn.TransformerConfig.tiny(dtype="float64")
        make = lambda m: g.Seq2SeqSession(m, [[1, 2, 3], [4, 5]], bos_id=1)  # noqa: E731
        model = tn.Transformer.from_config(cfg, seed=0)
    want = g.greedy(make(model), 6)
    moved = type(model).from_config(cfg, tree_map(to_xp, model.params))
    s = make(moved)
    assert g.greedy(s, 6) == want
    assert all(type(layer.k) is type(to_xp(np.zeros(1))) for layer in s.cache)  # the cache stays there too


def test_loss_and_gradients_run_in_the_params_library(to_xp):
    from transformer_np.model import transformer_loss
    from transformer_np.training.optim import adam_init, adam_step

    cfg = tn.TransformerConfig.tiny(dtype="float64", pad_id=0)
    params = tn.init_params(cfg, seed=0)
    src, tgt = np.array([[3, 4, 5, 0], [6, 7, 8, 9]]), np.array([[1, 5, 6, 2], [1, 7, 2, 0]])
    want_loss, want = transformer_loss(params, src, tgt[:, :-1], tgt[:, 1:], cfg, np.random.default_rng(1), 0.1)
    moved = tree_map(to_xp, params)
    loss, grads = transformer_loss(moved, to_xp(src), to_xp(tgt[:, :-1]), to_xp(tgt[:, 1:]), cfg,
                                   np.random.default_rng(1), 0.1)  # the same dropout masks
    flat, ref = tn.core.flatten(grads), tn.core.flatten(want)
    for k in ref:
        assert_same_backend_and_close(flat[k], moved["out"]["w"], ref[k], np.float64)
    np.testing.assert_allclose(float(loss), float(want_loss), atol=1e-12)
    stepped, _ = adam_step(moved, grads, adam_init(moved), 1e-3)
    assert type(tn.core.flatten(stepped)["out/w"]) is type(moved["out"]["w"])


@pytest.mark.parametrize("name", ["float16", "bfloat16", "float8_e4m3fn", "float8_e5m2"])
def test_weights_stored_in_low_precision_run_in_their_inputs_library(to_xp, name):
    # a library with the dtype stores in it (torch, NumPy via ml_dtypes, CuPy's float16); one without it (CuPy's
    # bfloat16 and float8, array-api-strict) stores the format's bit patterns: the same values either way
    from transformer_np.efficient.precision import CastMatrix

    rng = np.random.default_rng(3)
    w, x = randn(rng, 8, 6, dtype=np.float32), randn(rng, 4, 8, dtype=np.float32)
    ref, W, X = CastMatrix(w, name), CastMatrix(to_xp(w), name), to_xp(x)
    np.testing.assert_array_equal(tn.to_numpy(W.dequantize()), ref.dequantize())
    # W.matmul(X) is what X @ W calls where the library defers to W (NumPy, torch); array-api-strict refuses
    # non-arrays in its operators instead of deferring
    assert_same_backend_and_close(W.matmul(X), X, x @ ref.dequantize(), np.float32)


@pytest.mark.parametrize("kind", ["Q8_0", "Q4_1"])
def test_gguf_blocks_dequantize_in_their_inputs_library(to_xp, kind):
    from transformer_np.pretrained.gguf import QUANT_SIZES, GGUFMatrix

    rng = np.random.default_rng(4)
    blocks = rng.integers(0, 256, (4, QUANT_SIZES[kind][1]), dtype=np.uint8)
    blocks[:, :4] = rng.standard_normal((4, 2)).astype(np.float16).view(np.uint8)
    raw = blocks.reshape(-1)
    ref, W = GGUFMatrix(raw, kind, (2, 64)), GGUFMatrix(to_xp(raw), kind, (2, 64))
    got = W.dequantize()
    assert array_namespace(got) is array_namespace(to_xp(raw)) and device(got) == device(to_xp(raw))
    np.testing.assert_array_equal(tn.to_numpy(got), ref.dequantize())
