"""Training tasks generated offline, each with its tokenizer and held-out splits that never overlap training.

* ``reverse``: a string of digits -> the same digits reversed (sequence to sequence).
* ``dates``: a date written one of seven ways ("the 3rd of March, 2021", "3 Mar 21", "Wednesday, 3 March
  2021", ...) -> ISO "2021-03-03" (sequence to sequence, with real reordering).  The validation and test
  dates are never seen in training, in any format.
* ``sentiment``: a sentence from a small grammar with negation, intensifiers and contrast ("the plot was not
  bad at all", "the acting was hardly the best", "the food was dull but the service was charming") ->
  positive or negative (encoder classifier).  Word order matters: the same words can carry either label.
"""

from __future__ import annotations

import ast
import dataclasses
import datetime
import itertools
import os

import numpy as np

from ..model.config import TransformerConfig

PAD, BOS, EOS, UNK = 0, 1, 2, 3  # the special token ids of every task: padding, start, end, unknown
SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]


class Tokenizer:
    """Symbols (characters or words) <-> ids, with <pad>=0, <s>=1, </s>=2, <unk>=3 first."""

    def __init__(self, symbols, split_words=False):
        self.symbols = SPECIALS + [s for s in symbols if s not in SPECIALS]
        self.ids = {s: i for i, s in enumerate(self.symbols)}
        self.split_words = split_words

    def __len__(self):
        return len(self.symbols)

    def encode(self, text, bos=False, eos=False):
        units = text.split() if self.split_words else list(text)
        ids = [self.ids.get(u, UNK) for u in units]
        return ([BOS] if bos else []) + ids + ([EOS] if eos else [])

    def decode(self, ids):
        out = []
        for i in ids:
            i = int(i)
            if i == EOS:
                break
            if i not in (PAD, BOS):
                out.append(self.symbols[i] if 0 <= i < len(self.symbols) else "<unk>")
        return (" " if self.split_words else "").join(out)


def pad_batch(seqs, pad=PAD):
    """A list of id lists -> int64 (B, longest), right-padded."""
    out = np.full((len(seqs), max(map(len, seqs))), pad, np.int64)
    for b, s in enumerate(seqs):
        out[b, : len(s)] = s
    return out


@dataclasses.dataclass
class Task:
    name: str
    kind: str  # "seq2seq" or "classify"
    tokenizer: Tokenizer
    config: TransformerConfig
    train: list  # (input text, target text or label)
    val: list
    test: list
    steps: int = 2000  # default training steps
    batch_size: int = 64
    warmup: int = 400
    lr_factor: float = 1.0
    label_smoothing: float = 0.1
    labels: tuple = ()

    def batch(self, examples):
        """Arrays for a list of examples: seq2seq (src, tgt_in, tgt_out); classify (ids, labels)."""
        tok = self.tokenizer
        if self.kind == "classify":
            return pad_batch([tok.encode(x) for x, _ in examples]), np.array([y for _, y in examples])
        src = pad_batch([tok.encode(x) for x, _ in examples])
        tgt = pad_batch([tok.encode(y, bos=True, eos=True) for _, y in examples])
        return src, tgt[:, :-1], tgt[:, 1:]

    def sample(self, rng, size=None):
        """A random training batch (examples drawn with replacement by the np.random.Generator)."""
        idx = rng.integers(0, len(self.train), size=size or self.batch_size)
        return self.batch([self.train[i] for i in idx])


# --- reverse ---------------------------------------------------------------------------------------
def reverse_task(seed=0):
    rng = np.random.default_rng(seed)
    seen, pool = set(), []
    while len(pool) < 24000:
        s = "".join(map(str, rng.integers(0, 10, size=int(rng.integers(3, 11)))))
        if s not in seen:
            seen.add(s)
            pool.append((s, s[::-1]))
    cfg = TransformerConfig(d_model=64, n_heads=4, n_encoder_layers=2, n_decoder_layers=2, d_ff=128,
                            vocab_size=14, max_len=32, pad_id=PAD, dropout=0.0)
    return Task("reverse", "seq2seq", Tokenizer(list("0123456789")), cfg, pool[2000:], pool[1000:2000],
                pool[:1000], steps=6000, batch_size=64, warmup=400, lr_factor=2.0, label_smoothing=0.05)


# --- dates -----------------------------------------------------------------------------------------
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def ordinal(d):
    return f"{d}{'th' if 11 <= d % 100 <= 13 else {1: 'st', 2: 'nd', 3: 'rd'}.get(d % 10, 'th')}"


def date_formats(date):
    """The seven ways this task writes a date (two-digit years: 50-99 -> 19xx, 00-49 -> 20xx)."""
    d, m, y = date.day, date.month, date.year
    month, mon = MONTHS[m - 1], MONTHS[m - 1][:3]
    return [f"the {ordinal(d)} of {month}, {y}", f"{d} {mon} {y % 100:02d}", f"{month} {ordinal(d)} {y}",
            f"{mon} {d}, {y}", f"{d}/{m}/{y}", f"{y}.{m:02d}.{d:02d}", f"{DAYS[date.weekday()]}, {d} {month} {y}"]


def dates_task(seed=0):
    start = datetime.date(1950, 1, 1)
    dates = [start + datetime.timedelta(days=i) for i in range((datetime.date(2049, 12, 31) - start).days + 1)]
    order = np.random.default_rng(seed).permutation(len(dates))
    held = [dates[i] for i in order[:1500]]  # never seen in training, in any format
    train_dates = [dates[i] for i in order[1500:]]
    rng = np.random.default_rng(seed + 1)

    def examples(ds, every_format):
        out = []
        for date in ds:
            forms = date_formats(date)
            for f in (forms if every_format else [forms[int(rng.integers(len(forms)))]]):
                out.append((f, date.isoformat()))
        return out

    chars = sorted(set("".join(x for date in dates[:400] for x in date_formats(date)) + "0123456789-"))
    cfg = TransformerConfig(d_model=64, n_heads=4, n_encoder_layers=2, n_decoder_layers=2, d_ff=192,
                            vocab_size=len(chars) + 4, max_len=48, pad_id=PAD, dropout=0.0)
    return Task("dates", "seq2seq", Tokenizer(chars), cfg, examples(train_dates, True), examples(held[:500], False),
                examples(held[500:], False), steps=4000, batch_size=64, warmup=300, lr_factor=0.5)


# --- sentiment -------------------------------------------------------------------------------------
SUBJECTS = ["the movie", "this film", "the plot", "the acting", "the soundtrack", "the ending", "this book",
            "the food", "the service", "the hotel", "the story", "the show"]
VERBS = ["is", "was", "seems", "felt"]
POSITIVE = ["good", "great", "excellent", "wonderful", "fun", "brilliant", "enjoyable", "charming"]
NEGATIVE = ["bad", "terrible", "awful", "boring", "dull", "painful", "mediocre", "disappointing"]
INTENSIFIERS = ["very", "really", "extremely", "quite"]
NEGATIONS = ("not", "hardly", "never")


def _polarity(adj):
    return 1 if adj in POSITIVE else 0


def sentiment_sentences():
    """Every sentence of the grammar with its label (1 positive, 0 negative)."""
    out = []
    for subj, verb, adj in itertools.product(SUBJECTS, VERBS, POSITIVE + NEGATIVE):
        p = _polarity(adj)
        out.append((f"{subj} {verb} {adj}", p))
        out += [(f"{subj} {verb} {i} {adj}", p) for i in INTENSIFIERS]
        out += [(f"{subj} {verb} not {adj}", 1 - p), (f"{subj} {verb} not {adj} at all", 1 - p),
                (f"{subj} {verb} hardly {adj}", 1 - p), (f"{subj} {verb} never {adj}", 1 - p)]
        out += [(f"{subj} {verb} not {i} {adj}", 1 - p) for i in INTENSIFIERS[:2]]
    for subj, verb in itertools.product(SUBJECTS, VERBS):
        out += [(f"{subj} {verb} the best", 1), (f"{subj} {verb} the worst", 0),
                (f"{subj} {verb} hardly the best", 0), (f"{subj} {verb} not the worst", 1),
                (f"{subj} {verb} not the best", 0), (f"{subj} {verb} never the worst", 1)]
    rng = np.random.default_rng(7)
    adjs = POSITIVE + NEGATIVE
    for _ in range(6000):  # contrast: the clause after "but" decides
        s1, s2 = rng.choice(SUBJECTS, 2, replace=False)
        a1, a2 = rng.choice(adjs, 2)
        neg = bool(rng.integers(2))
        second = f"{s2} was {'not ' if neg else ''}{a2}"
        out.append((f"{s1} was {a1} but {second}", (1 - _polarity(a2)) if neg else _polarity(a2)))
    return list(dict.fromkeys(out))  # unique, order kept


def is_negated(sentence):
    return any(w in NEGATIONS for w in sentence.split())


def sentiment_task(seed=0):
    unique = sentiment_sentences()  # one label per text, each text once
    order = np.random.default_rng(seed).permutation(len(unique))
    unique = [unique[i] for i in order]
    words = sorted({w for text, _ in unique for w in text.split()})
    cfg = TransformerConfig(d_model=64, n_heads=4, n_encoder_layers=2, n_decoder_layers=0, d_ff=128,
                            vocab_size=len(words) + 4, max_len=24, pad_id=PAD, dropout=0.1,
                            architecture="encoder-classifier", n_classes=2)
    return Task("sentiment", "classify", Tokenizer(words, split_words=True), cfg, unique[3000:], unique[:1000],
                unique[1000:3000], steps=1500, batch_size=64, warmup=200, labels=("negative", "positive"))


# --- a character-level language model on text that ships with the package ------------------------------------
def docstring_corpus():
    """The docstrings of this package's modules, classes and functions, in file order: ~100 KB of English about
    Transformers, available offline — the text a character-level language model is trained on."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    texts = []
    for folder, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        for name in sorted(f for f in files if f.endswith(".py")):
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                tree = ast.parse(f.read())
            for node in [tree, *ast.walk(tree)]:
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and ast.get_docstring(node):
                    texts.append(ast.get_docstring(node))
    return "\n\n".join(dict.fromkeys(texts))  # each docstring once


TASKS = {"reverse": reverse_task, "dates": dates_task, "sentiment": sentiment_task}


def get_task(name, seed=0):
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {sorted(TASKS)}")
    return TASKS[name](seed)
