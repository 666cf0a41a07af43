"""BERT's WordPiece tokenizer in pure Python, from a vocab.txt (uncased BERT: lower-case, strip accents).

1. basic tokenization: drop control characters, map whitespace to spaces, put spaces around CJK
   characters, lower-case, strip accents (NFD, drop combining marks), split on whitespace and punctuation;
2. WordPiece: greedy longest-match-first over each word, continuation pieces prefixed with ``##``; a word
   with no full cover, or longer than 100 characters, becomes [UNK];
3. [CLS] … [SEP], truncated to ``max_length`` (with a warning), padded with an attention mask for batches.

The ids equal those of Hugging Face's ``tokenizers`` (tests/test_pretrained.py), with one known difference:
character classes come from Python's ``unicodedata`` (Unicode 14 on Python 3.11), while ``tokenizers`` uses
older tables.  A character that is punctuation only in newer Unicode — U+061D ARABIC END OF TEXT MARK
(Unicode 14), U+2E4E and U+2E52 (11 and 13) — splits a word here, where ``tokenizers`` keeps it inside the word
and the word becomes [UNK].
"""

from __future__ import annotations

import unicodedata
import warnings

import numpy as np

MAX_WORD_CHARS = 100


def _is_whitespace(ch):
    return ch in " \t\n\r" or unicodedata.category(ch) == "Zs"


def _is_control(ch):
    """Dropped in cleaning: control, format, private-use and surrogate characters.  Unassigned code points (Cn)
    are kept, as the Hugging Face tokenizer keeps them (the word holding one becomes [UNK])."""
    if ch in "\t\n\r":
        return False
    return unicodedata.category(ch) in ("Cc", "Cf", "Co", "Cs")


def _is_punctuation(ch):
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:  # all ASCII non-alphanumerics
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(cp):
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


def basic_tokenize(text):
    """Text -> list of words and punctuation marks, cleaned, lower-cased and accent-stripped."""
    chars = []
    for ch in text:
        cp = ord(ch)
        if cp == 0 or cp == 0xFFFD or _is_control(ch):
            continue
        if _is_whitespace(ch):
            chars.append(" ")
        elif _is_cjk(cp):
            chars.extend((" ", ch, " "))
        else:
            chars.append(ch)
    words = []
    for token in "".join(chars).split():
        token = unicodedata.normalize("NFD", "".join(ch.lower() for ch in token))  # per character, as
        # tokenizers does: str.lower() would turn a word-final Σ into ς, the tokenizer into σ
        token = "".join(ch for ch in token if unicodedata.category(ch) != "Mn")
        word = []
        for ch in token:
            if _is_punctuation(ch):
                if word:
                    words.append("".join(word))
                    word = []
                words.append(ch)
            else:
                word.append(ch)
        if word:
            words.append("".join(word))
    return words


class WordPieceTokenizer:
    """Token ids for BERT from its vocab.txt (one token a line, the line number is the id)."""

    def __init__(self, vocab, max_length=512):
        self.vocab = vocab  # {token: id}
        self.inv = {i: t for t, i in vocab.items()}
        self.max_length = max_length
        for special in ("[CLS]", "[SEP]", "[UNK]", "[PAD]"):
            if special not in vocab:
                raise ValueError(f"vocabulary has no {special} token")
        self.cls_id, self.sep_id = vocab["[CLS]"], vocab["[SEP]"]
        self.unk_id, self.pad_id = vocab["[UNK]"], vocab["[PAD]"]

    @classmethod
    def from_file(cls, path, max_length=512):
        with open(path, encoding="utf-8") as f:
            vocab = {line.rstrip("\n"): i for i, line in enumerate(f)}
        return cls(vocab, max_length)

    def wordpiece(self, word):
        """Greedy longest-match-first pieces of one word; [UNK] if it cannot be covered."""
        if len(word) > MAX_WORD_CHARS:
            return ["[UNK]"]
        pieces, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.vocab:
                    break
                end -= 1
            if end == start:
                return ["[UNK]"]
            pieces.append(piece)
            start = end
        return pieces

    def tokenize(self, text):
        """Text -> WordPiece strings (no special tokens)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        return [p for word in basic_tokenize(text) for p in self.wordpiece(word)]

    def encode(self, text):
        """[CLS] pieces [SEP] as ids, truncated to max_length with a warning."""
        ids = [self.vocab.get(p, self.unk_id) for p in self.tokenize(text)]
        room = self.max_length - 2
        if len(ids) > room:
            warnings.warn(f"text of {len(ids) + 2} tokens truncated to max_length={self.max_length}",
                          stacklevel=2)
            ids = ids[:room]
        return [self.cls_id, *ids, self.sep_id]

    def batch(self, texts):
        """{"input_ids": int64 (B, T), "attention_mask": int64 (B, T)} padded with [PAD] to the longest."""
        if isinstance(texts, str) or not isinstance(texts, (list, tuple)):
            raise TypeError(f"texts must be a list of str, got {type(texts).__name__}")
        if not texts:
            raise ValueError("texts must not be empty")
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"texts[{i}] must be a str, got {type(t).__name__}")
        encoded = [self.encode(t) for t in texts]
        T = max(map(len, encoded))
        ids = np.full((len(encoded), T), self.pad_id, np.int64)
        mask = np.zeros((len(encoded), T), np.int64)
        for b, e in enumerate(encoded):
            ids[b, : len(e)], mask[b, : len(e)] = e, 1
        return {"input_ids": ids, "attention_mask": mask}

    def decode(self, ids):
        return [self.inv.get(int(i), "[UNK]") for i in ids]
