"""The package's contracts, each declared once and checked over every implementation: stored weights
(core.weights.StoredWeight), KV caches (decoding.cache.LayerKVCache / KVCache) and the decoder-model protocol
(model.protocol.DecoderModel) — and a walk of the package that finds no attribute sniffing in their place."""

import ast
from pathlib import Path

import numpy as np
import pytest
from helpers import tiny_llama

import transformer_np as tn
from transformer_np.core.ggml_formats import GGUFMatrix
from transformer_np.core.weights import StoredWeight
from transformer_np.decoding.cache import KVCache, LayerCache, LayerKVCache, new_cache
from transformer_np.efficient import awq, cost_model, kv_int8, paged, precision, quality
from transformer_np.efficient import quantize as Q
from transformer_np.efficient import tensor_parallel_mpi as mpi
from transformer_np.model.protocol import DecoderModel
from transformer_np.pretrained.llama import LlamaConfig, LlamaModel

pytestmark = pytest.mark.check  # the math check tier: `make check` (see the Makefile)

PACKAGE = Path(tn.__file__).resolve().parent


# --- stored weights ------------------------------------------------------------------------------------------
class OneRank:
    """An MPI communicator of one process: the collectives are copies."""

    def Allreduce(self, send, recv):  # noqa: N802 - mpi4py's names
        pass  # in place, one rank: the sum is the value

    def Allgatherv(self, send, recv):  # noqa: N802
        recv[0][...] = send


STORED = {  # every StoredWeight subclass: how to make one from a float32 (C_in, C_out) matrix
    "WeightOnlyMatrix": lambda w: Q.WeightOnlyMatrix(w, bits=8, axis=0),
    "W8A8Matrix": Q.W8A8Matrix,
    "LLMInt8Matrix": Q.LLMInt8Matrix,
    "CastMatrix": lambda w: precision.CastMatrix(w, "bfloat16"),
    "GGUFMatrix": lambda w: GGUFMatrix.quantized(w, "Q8_0"),  # w's rows as Q8_0 blocks, as a file lays them out
    "ScaledInputMatrix": lambda w: awq.ScaledInputMatrix(w, np.linspace(0.5, 2, w.shape[0], dtype=np.float32), 8,
                                                         None),
    "ActivationRecorder": lambda w: quality.ActivationRecorder(w, "w"),
    "AllReduceMatrix": lambda w: mpi.AllReduceMatrix(w, OneRank(), mpi.CommStats()),
    "AllGatherMatrix": lambda w: mpi.AllGatherMatrix(w, 1, 0, OneRank(), mpi.CommStats()),
    "TiedTable": lambda w: mpi.TiedTable(w, 1, 0, OneRank(), mpi.CommStats()),
}
# products whose arithmetic is not x @ deq(W): W8A8 and LLM.int8() also quantize x per token (int8: 2^-7 of the
# row's largest value, each of C_in terms)
TOLERANCE = {"W8A8Matrix": 5e-2, "LLMInt8Matrix": 5e-2}


def all_subclasses(cls):
    return {s for c in cls.__subclasses__() for s in {c} | all_subclasses(c)}


def test_every_stored_weight_class_is_in_the_conformance_table():
    names = {c.__name__ for c in all_subclasses(StoredWeight) if c.__module__.startswith("transformer_np")}
    assert names == set(STORED)


@pytest.mark.parametrize("name", sorted(STORED))
@pytest.mark.parametrize("rows", [1, 3, 37])
def test_stored_weight_product_equals_the_product_with_its_dequantized_matrix(rng, name, rows):
    if name == "AllReduceMatrix":  # its product passes MPI.IN_PLACE to the all-reduce
        pytest.importorskip("mpi4py", reason="the all-reduce names mpi4py's MPI.IN_PLACE: pip install mpi4py mpich")
    w = rng.standard_normal((64, 96)).astype(np.float32)  # (GGUF blocks: rows of a multiple of 32 values)
    W = STORED[name](w)
    x = rng.standard_normal((rows, 64)).astype(np.float32)
    assert isinstance(W, StoredWeight) and W.shape == (64, 96) and W.ndim == 2
    y, ref = x @ W, x @ W.dequantize()
    assert y.shape == (rows, 96) and y.dtype == np.float32
    tol = TOLERANCE.get(name, 1e-6)  # float32 rounding of the same product
    np.testing.assert_allclose(y, ref, rtol=tol, atol=tol * np.abs(ref).max())


@pytest.mark.parametrize("name", sorted(STORED))
def test_stored_weight_rows_and_transpose_are_the_dequantized_matrix(rng, name):
    w = rng.standard_normal((64, 32)).astype(np.float32)
    W = STORED[name](w)
    deq = np.asarray(W.dequantize())
    ids = np.array([[5, 0], [63, 5]])
    np.testing.assert_array_equal(W.take_rows(ids), deq[ids])
    assert W.T.shape == (32, 64)
    np.testing.assert_array_equal(np.asarray(W.T.dequantize()), deq.T)
    assert isinstance(W.nbytes, int) and W.nbytes > 0


TILED = {  # the stored weights whose codes core.tiled reads, and the orientation in which their rows are outputs
    "int8 per channel": (lambda w: Q.WeightOnlyMatrix(w, 8, axis=0), False),
    "int4 groups, asymmetric": (lambda w: Q.WeightOnlyMatrix(w, 4, axis=0, group_size=32, asymmetric=True), False),
    "int8 per row of the table": (lambda w: Q.WeightOnlyMatrix(w, 8, axis=1), True),
    "bfloat16 by columns": (lambda w: precision.CastMatrix(np.asfortranarray(w), "bfloat16"), False),
    "float8 by rows": (lambda w: precision.CastMatrix(w, "float8_e4m3fn"), True),
    "GGUF Q8_0": (lambda w: GGUFMatrix.quantized(w, "Q8_0"), True),
    "GGUF Q4_0": (lambda w: GGUFMatrix.quantized(w, "Q4_0"), True),
    "GGUF Q4_1": (lambda w: GGUFMatrix.quantized(w, "Q4_1"), True),
}


@pytest.mark.parametrize("name", sorted(TILED))
def test_stored_weights_multiply_tile_by_tile_where_their_rows_are_the_outputs(rng, name, monkeypatch):
    from transformer_np.core import tiled

    calls = []
    product = tiled.matmul
    monkeypatch.setattr(tiled, "matmul", lambda x, w, threads=None: calls.append(w) or product(x, w, threads))
    make, transposed = TILED[name]
    W = make(rng.standard_normal((64, 96)).astype(np.float32))
    for V in (W, W.T):
        x = rng.standard_normal((5, V.shape[0])).astype(np.float32)
        y, ref = x @ V, x @ V.dequantize()
        assert y.shape == ref.shape and y.dtype == np.float32
        np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())  # float32 rounding
    assert len(calls) == 1 and (W.T if transposed else W).output_codes() is calls[0]
    assert (W if transposed else W.T).output_codes() is None


def test_linear_takes_a_stored_weight_where_it_takes_an_array(rng):
    w = rng.standard_normal((32, 8)).astype(np.float32)
    W = precision.CastMatrix(w, "bfloat16")
    x = rng.standard_normal((2, 3, 32)).astype(np.float32)
    np.testing.assert_allclose(tn.linear(x, W), tn.linear(x, W.dequantize()), rtol=1e-6, atol=1e-6)


# --- KV caches -----------------------------------------------------------------------------------------------
def _paged_layer_cache(n_blocks=16):
    pool = paged.BlockPool(1, n_blocks, 2, 4, block_size=4, dtype=np.float64)
    return paged.PagedKVCache(pool, [pool.new_sequence() for _ in range(2)])


WINDOW = 6

CACHES = {  # every KVCache a session can be given, with what it supports and its exactness
    "contiguous": (lambda: new_cache(1), {"truncate", "select"}, 0.0),
    "sliding window": (lambda: new_cache(1, [WINDOW]), {"truncate", "select", "window"}, 0.0),
    "int8 per token": (lambda: kv_int8.int8_cache(1), {"truncate"}, 2e-2),
    "int8 keys per channel": (lambda: kv_int8.int8_cache(1, keys="channel", group=4), set(), 5e-2),
    "paged": (_paged_layer_cache, {"select"}, 0.0),
}


def test_every_layer_cache_class_is_exercised_by_the_conformance_tests():
    exercised = {type(layer) for make, _, _ in CACHES.values() for layer in make()}
    defined = {c for c in all_subclasses(LayerKVCache) if c.__module__.startswith("transformer_np")}
    assert defined == exercised


@pytest.mark.parametrize("name", sorted(CACHES))
def test_cache_extend_truncate_select_equal_a_plain_list_of_arrays(rng, name):
    make, supports, tol = CACHES[name]
    cache = make()
    assert isinstance(cache, KVCache) and all(isinstance(layer, LayerKVCache) for layer in cache)
    ks, vs = [], []  # the reference: every position's (B, H_kv, 1, D) keys and values, in order

    def extend(T):
        k, v = rng.standard_normal((2, 2, T, 4)), rng.standard_normal((2, 2, T, 4))
        ks.extend(np.split(k, T, axis=2)), vs.extend(np.split(v, T, axis=2))
        got_k, got_v = cache[0].extend(k, v)
        # a window's cache returns the last W − 1 + T positions (all the T queries can see), the others all
        n = min(len(ks), WINDOW - 1 + T) if "window" in supports else len(ks)
        assert cache.length == len(ks) and got_k.shape == (2, 2, n, 4)
        np.testing.assert_allclose(got_k, np.concatenate(ks[-n:], axis=2), atol=tol * 4)
        np.testing.assert_allclose(got_v, np.concatenate(vs[-n:], axis=2), atol=tol * 4)

    for T in (3, 1, 1, 6, 1, 2):
        extend(T)
    assert cache.nbytes() > 0
    if "truncate" in supports:
        back = 1 if "window" in supports else 4  # a window's cache rolls back only its last extend
        cache.truncate(len(ks) - back)
        del ks[len(ks) - back:], vs[len(vs) - back:]
        assert cache.length == len(ks)
        extend(2)
    else:
        with pytest.raises(NotImplementedError):
            cache.truncate(9)
    if "select" in supports:
        cache = cache.select(np.array([1, 1]))
        ks, vs = [k[[1, 1]] for k in ks], [v[[1, 1]] for v in vs]
        extend(1)
    else:
        with pytest.raises(NotImplementedError):
            cache.select(np.array([1, 1]))


def test_contiguous_cache_grows_its_capacity_geometrically(rng):
    layer = LayerCache()
    capacities = set()
    for _ in range(1000):
        layer.extend(*rng.standard_normal((2, 1, 1, 1, 2)))
        capacities.add(layer.capacity_bytes())
    assert layer.length == 1000 and len(capacities) <= 11  # 1, 2, 4, …, 1024 positions: log2 reallocations
    assert layer.nbytes() == 2 * 1000 * 2 * 8 < layer.capacity_bytes()


def test_a_window_cache_holds_at_most_w_minus_1_plus_t_positions_whatever_the_context(rng):
    layer = new_cache(1, [WINDOW])[0]
    capacities = set()
    for t in range(300):
        T = 1 + t % 3
        layer.extend(*rng.standard_normal((2, 1, 1, T, 2)))
        assert layer.held == min(layer.length, WINDOW - 1 + T)
        capacities.add(layer.capacity_bytes())
    assert layer.nbytes() == 2 * layer.held * 2 * 8 and len(capacities) <= 3  # its buffers stop growing
    k, v = rng.standard_normal((2, 1, 1, 50, 2))  # a chunk longer than W: all returned, its last W − 1 stored
    got_k, _ = layer.extend(k, v)
    assert got_k.shape[2] == WINDOW - 1 + 50 and layer.held == WINDOW - 1 and layer.length == 300 * 2 + 50
    np.testing.assert_array_equal(layer.k[0, 0], k[0, 0, -(WINDOW - 1):])
    assert layer.capacity_bytes() <= 2 * (4 * WINDOW) * 2 * 8  # k and v: at most 4W positions, not 50 + W


def test_a_window_cache_refuses_a_roll_back_past_what_it_holds(rng):
    layer = new_cache(1, [WINDOW])[0]
    for T in (5, 1, 1):
        layer.extend(*rng.standard_normal((2, 1, 1, T, 2)))  # holds positions 2…6: 0 and 1 are forgotten
    layer.truncate(6)  # the last extend's position: still fine
    with pytest.raises(ValueError, match=r"W=6.*cannot roll back to length=4"):
        layer.truncate(4)  # a query at 4 would need keys 0…3
    assert layer.length == 6


def test_model_caches_follow_each_layers_window():
    from transformer_np.decoding.cache import WindowCache, model_cache
    from transformer_np.pretrained.gemma3 import Gemma3Config

    cfg = Gemma3Config(n_layers=7)
    cache = model_cache(cfg)(cfg.n_layers, 1)
    assert [type(layer) for layer in cache] == [WindowCache] * 5 + [LayerCache] + [WindowCache]
    assert {layer.window for layer in cache if isinstance(layer, WindowCache)} == {512}
    with pytest.raises(ValueError, match="one window .* per layer: 3, got 2"):
        new_cache(3, [4, None])


def test_contiguous_cache_views_stay_valid_for_the_positions_they_show(rng):
    layer = LayerCache()
    k0 = rng.standard_normal((1, 1, 3, 2))
    first, _ = layer.extend(k0, k0)
    layer.extend(rng.standard_normal((1, 1, 1, 2)), rng.standard_normal((1, 1, 1, 2)))
    np.testing.assert_array_equal(layer.k[:, :, :3], k0)


# --- the decoder-model protocol ------------------------------------------------------------------------------
def _models(rng):
    params, cfg = tiny_llama(rng)
    return [tn.DecoderLM(tn.TransformerConfig.lm_tiny(n_kv_heads=2)), LlamaModel(params, cfg, tokenizer=None)]


def test_both_model_families_give_the_protocol_names(rng):
    for model in _models(rng):
        cfg = model.config
        assert isinstance(model, DecoderModel)
        assert cfg.n_layers == len(model.params["decoder"]["layers"])
        assert cfg.kv_heads == 2 and cfg.d_head * cfg.n_heads == cfg.d_model
        assert isinstance(cfg.tied_embeddings, bool) and cfg.vocab_size > 0 and cfg.max_len > 0
        assert cfg.with_layers(1).n_layers == 1 and cfg.n_layers == 2
        assert cfg.windows == (None, None) and cfg.with_layers(1).windows == (None,)


def test_attention_gives_each_blocks_weights_and_with_params_leaves_the_model_alone(rng):
    for model in _models(rng):
        ids = np.array([[1, 2, 3, 4]])
        weights = model.attention(ids)
        assert len(weights) == model.config.n_layers
        assert all(w.shape == (1, model.config.n_heads, 4, 4) for w in weights)
        np.testing.assert_allclose(np.asarray(weights[0]).sum(-1), 1.0, rtol=1e-6)
        zeroed = tn.core.tree.tree_map(lambda a: None if a is None else a * 0, model.params)
        twin = model.with_params(zeroed)
        assert twin.params is zeroed and model.params is not zeroed and type(twin) is type(model)
        assert float(np.abs(model.step(ids)).max()) > 0


def test_a_session_asked_for_weights_keeps_each_steps_and_the_same_logits(rng):
    from transformer_np.decoding.search import greedy
    from transformer_np.decoding.sessions import LMSession

    for model in _models(rng):
        ids = [1, 2, 3, 4]
        session, plain = LMSession(model, [ids], need_weights=True), LMSession(model, [ids])
        for got, want in zip(session.weights, model.attention(np.array([ids]))):
            np.testing.assert_array_equal(np.asarray(got), np.asarray(want))  # the prompt: every query's row
        seen = []

        def keep(step, s, tokens, seen=seen):
            seen.append([np.asarray(w) for w in s.weights])

        out = greedy(session, 3, on_step=keep)
        assert out == greedy(plain, 3)
        assert [w[0].shape for w in seen] == [(1, model.config.n_heads, 4, 4), (1, model.config.n_heads, 1, 5),
                                             (1, model.config.n_heads, 1, 6)]  # then the new token's row
        full = model.attention(np.array([ids + out[0][:2]]))  # the last step's row, recomputed without a cache
        for got, want in zip(seen[-1], full):
            np.testing.assert_allclose(got[0, :, -1], np.asarray(want)[0, :, -1], rtol=1e-5, atol=1e-7)


def test_a_config_of_either_family_gives_the_cost_models_shape(rng):
    shape = cost_model.ModelShape.from_config(LlamaConfig())
    assert shape.n_layers == 30 and shape.gated and shape.n_kv_heads == 3
    tiny = cost_model.ModelShape.from_config(tn.TransformerConfig.lm_tiny())
    assert tiny.n_layers == 2 and not tiny.gated


# --- no sniffing in their place --------------------------------------------------------------------------------
SNIFFED = {"take_rows", "n_layers", "nbytes", "select", "params", "config", "memory", "rope_base", "architecture",
           "kv_heads", "tied_embeddings", "tie_embeddings"}


def sniffs(tree):
    """hasattr/getattr(x, "<a protocol name>") calls, and len(…["layers"]) counts of blocks."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("hasattr", "getattr") \
                and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) and node.args[1].value in SNIFFED:
            found.append((node.lineno, f"{node.func.id}(…, {node.args[1].value!r})"))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "len" and node.args \
                and isinstance(node.args[0], ast.Subscript) and isinstance(node.args[0].slice, ast.Constant) \
                and node.args[0].slice.value == "layers":
            found.append((node.lineno, 'len(…["layers"])'))
    return found


def test_the_sniff_finder_finds_what_it_looks_for():
    tree = ast.parse('hasattr(w, "take_rows")\nlen(params["decoder"]["layers"])\nhasattr(x, "shape")\n')
    assert [line for line, _ in sniffs(tree)] == [1, 2]


def test_no_module_tells_protocol_implementations_apart_by_their_attributes():
    found = [f"{p.relative_to(PACKAGE)}:{line}: {what}" for p in sorted(PACKAGE.rglob("*.py"))
             for line, what in sniffs(ast.parse(p.read_text(), str(p)))]
    assert not found, "\n".join(found)


def test_the_weight_quantization_module_holds_no_cache():
    classes = [v for v in vars(Q).values() if isinstance(v, type) and v.__module__ == Q.__name__]
    assert classes and not [c for c in classes if issubclass(c, (LayerKVCache, KVCache))]
