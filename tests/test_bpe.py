"""Learning byte-level BPE merges (#33, chapter 9): the incremental trainer equals a loop-level one that recounts
every pair after every merge, and Hugging Face ``tokenizers``' BpeTrainer merge for merge on the same text and
pre-tokenizer; the tokenizer it returns encodes as tokenizers' does and decodes back to the text."""

import collections
import json

import pytest

from transformer_np.efficient.quality import eval_text
from transformer_np.pretrained.bpe import byte_to_symbol, pre_tokenize, train_bpe
from transformer_np.training.tasks import docstring_corpus

OVERLAPS = ["aaaa aaaa aaaaaaa abab ababab 12345 1111 éé 中文中文 ok"] * 3  # runs that overlap, digits, multi-byte


def naive_bpe(texts, vocab_size):
    """The loop-level version: after each merge, every pair of every piece counted again from scratch."""
    table = byte_to_symbol()
    pieces = collections.Counter("".join(table[b] for b in p.encode()) for t in texts for p in pre_tokenize(t))
    tokens = sorted(table.values())
    ids = {t: i for i, t in enumerate(tokens)}
    words = {tuple(ids[c] for c in w): n for w, n in pieces.items()}
    merges = []
    while len(tokens) < vocab_size:
        counts = collections.Counter()
        for w, n in words.items():
            for i in range(len(w) - 1):
                counts[w[i], w[i + 1]] += n
        if not counts:
            break
        (a, b), _ = min(counts.items(), key=lambda kv: (-kv[1], kv[0]))  # most frequent, then smaller ids
        new = ids.setdefault(tokens[a] + tokens[b], len(tokens))
        if new == len(tokens):
            tokens.append(tokens[a] + tokens[b])
        merges.append(f"{tokens[a]} {tokens[b]}")
        joined = collections.Counter()
        for w, n in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == (a, b):
                    out.append(new)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            joined[tuple(out)] += n
        words = joined
    return merges


def merges_of(tok):
    return [f"{a} {b}" for (a, b), _ in sorted(tok.ranks.items(), key=lambda kv: kv[1])]


@pytest.mark.parametrize("texts, vocab_size", [(OVERLAPS, 300), ([docstring_corpus()[:30000]], 700)],
                         ids=["overlapping runs", "docstrings"])
def test_incremental_counts_learn_the_merges_that_recounting_every_pair_learns(texts, vocab_size):
    assert merges_of(train_bpe(texts, vocab_size)) == naive_bpe(texts, vocab_size)


def hf_trained(texts, vocab_size):
    tokenizers = pytest.importorskip("tokenizers", reason="pip install tokenizers (make test installs it)")
    from tokenizers import models, pre_tokenizers, trainers

    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return tok


@pytest.mark.parametrize("texts, vocab_size", [(OVERLAPS, 300), ([docstring_corpus()], 3000),
                                               (docstring_corpus().split("\n\n")[:500], 1000)],
                         ids=["overlapping runs", "docstrings", "paragraphs"])
def test_merges_and_vocabulary_equal_tokenizers_bpe_trainer(texts, vocab_size):
    hf = hf_trained(texts, vocab_size)
    ours = train_bpe(texts, vocab_size)
    model = json.loads(hf.to_str())["model"]
    assert merges_of(ours) == [" ".join(m) if isinstance(m, list) else m for m in model["merges"]]
    assert ours.ids == model["vocab"]
    text = eval_text()[:3000]  # text it was not trained on
    assert ours.encode(text) == hf.encode(text).ids and ours.decode(ours.encode(text)) == text


def test_training_stops_at_the_vocabulary_size_or_when_no_pair_is_frequent_enough():
    tok = train_bpe("the cat sat on the mat; the cat sat", 260)
    assert len(tok) == 260 and merges_of(tok)[0] == "a t"  # 'at' occurs 5 times, 'Ġt' and 'th' fewer
    # 'ab' occurs 3 times (once alone, twice after a space); then 'Ġab' twice only
    assert merges_of(train_bpe("ab ab ab cd", 1000, min_frequency=3)) == ["a b"]
    with pytest.raises(ValueError, match="vocab_size must be an int >= 256 .*got 100"):
        train_bpe("text", 100)
