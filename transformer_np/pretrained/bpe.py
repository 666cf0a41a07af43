r"""Byte-level BPE (GPT-2's tokenizer, as SmolLM2 and most LLMs use it), from the vocabulary, merges and special
tokens stored in a GGUF file, and the chat template that turns messages into a prompt.

Encoding, step by step:

1. **special tokens** (``<|im_start|>``, ``<|im_end|>``, …) are cut out of the text first and kept whole;
2. **pre-tokenization** splits the rest into pieces that BPE never merges across: every digit alone (the
   "smollm" pre-tokenizer of llama.cpp), then GPT-2's pattern — contractions, a letter run with its leading
   space, a number run, a punctuation run, whitespace;
3. **bytes to symbols**: each UTF-8 byte of a piece becomes one printable character (GPT-2's table: the 188
   printable bytes stand for themselves, the other 68 for U+0100 …), so a space is ``Ġ`` and any text is covered;
4. **merges**: the adjacent pair with the lowest merge rank is joined, everywhere in the piece, until no pair
   of the piece has a rank; each resulting symbol is one token.

Decoding reverses step 3: tokens → symbols → bytes → UTF-8 (a character split across tokens is held back until
its last byte arrives: :class:`StreamDecoder`).
"""

from __future__ import annotations

import codecs
import collections
import functools
import heapq
import warnings

import jinja2.sandbox
import numpy as np
import regex

from ..core.ggml_formats import GGUFError

# GPT-2's pattern, with the "smollm" pre-tokenizer's digit split in front of it
DIGIT = regex.compile(r"\p{N}")
PIECE = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")
SPECIAL_TYPES = (3, 4)  # GGUF token types CONTROL and USER_DEFINED: matched whole in the text


@functools.cache
def byte_to_symbol():
    """GPT-2's table: byte b -> a printable character.  Printable Latin-1 bytes stand for themselves; the others
    (controls, space, …) are moved to U+0100 onwards in byte order, so every symbol is visible."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {b: chr(b) for b in keep}, 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def pre_tokenize(text):
    """The pieces BPE works on, in order: each digit alone, then GPT-2's pattern on what lies between."""
    pieces, start = [], 0
    for m in DIGIT.finditer(text):
        pieces += PIECE.findall(text[start:m.start()]) + [m.group()]
        start = m.end()
    return pieces + PIECE.findall(text[start:])


def gguf_strings(gguf, key):
    """Metadata ``key`` of a GGUF file, which must be an array of strings (the tokens, the merges)."""
    value = gguf.metadata.get(key)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise GGUFError(f"{gguf.path}: {key} must be an array of strings, got "
                        f"{'nothing' if value is None else type(value).__name__ + ' of other items'}")
    return value


def gguf_vocabulary(gguf):
    """(tokens, merges, token types) of a GGUF file's byte-level BPE tokenizer, each checked: a missing key, tokens
    or merges that are not strings, or token types that are not one integer per token are GGUFErrors."""
    m = gguf.metadata
    if m.get("tokenizer.ggml.model") != "gpt2":
        raise GGUFError(f"{gguf.path}: tokenizer model {m.get('tokenizer.ggml.model')!r} is not byte-level BPE "
                        "('gpt2')")
    found = [gguf_strings(gguf, key) for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.merges")]
    types = m.get("tokenizer.ggml.token_type")
    if types is not None and (not isinstance(types, np.ndarray) or types.dtype.kind not in "iu"
                              or types.shape != (len(found[0]),)):
        raise GGUFError(f"{gguf.path}: tokenizer.ggml.token_type must be {len(found[0])} integers, one a token")
    return (*found, types)


class UnknownBytesWarning(UserWarning):
    """Text held a byte the vocabulary has no token for; it was left out of the ids (the warning names it)."""


class BPETokenizer:
    """Byte-level BPE: ``encode(text) -> ids`` and ``decode(ids) -> str``."""

    def __init__(self, tokens, merges, token_types=None):
        self.tokens = list(tokens)
        self.ids = {t: i for i, t in enumerate(self.tokens)}
        if len(self.ids) != len(self.tokens):
            raise ValueError("the vocabulary lists a token twice")
        self.ranks = {}
        for rank, merge in enumerate(merges):
            a, sep, b = merge.partition(" ")
            if not sep or not a or not b:
                raise ValueError(f"merge {rank} must be two symbols separated by a space, got {merge!r}")
            self.ranks[(a, b)] = rank
        types = token_types if token_types is not None else [1] * len(self.tokens)
        if len(types) != len(self.tokens):
            raise ValueError(f"{len(types)} token types for {len(self.tokens)} tokens")
        self.special = {t: i for i, (t, kind) in enumerate(zip(self.tokens, types)) if kind in SPECIAL_TYPES}
        if "" in self.special:
            raise ValueError(f"special token {self.special['']} is empty (it would match between every character)")
        if len(self.ranks) != len(merges):
            raise ValueError(f"{len(merges) - len(self.ranks)} merges are listed twice")
        longest_first = sorted(self.special, key=len, reverse=True)
        self._special_re = regex.compile("|".join(map(regex.escape, longest_first))) if self.special else None
        self._to_symbol = byte_to_symbol()
        self._to_byte = {s: b for b, s in self._to_symbol.items()}
        outside = next((i for i, t in enumerate(self.tokens) if t not in self.special
                        and not all(c in self._to_byte for c in t)), None)
        if outside is not None:  # found now, not when a decode first meets it
            raise ValueError(f"token {outside} ({self.tokens[outside]!r}) is neither special nor made of the byte "
                             "alphabet's symbols")
        self._bpe = functools.lru_cache(maxsize=65536)(self._merge)

    @classmethod
    def from_gguf(cls, gguf):
        """The tokenizer a GGUF file describes (:func:`gguf_vocabulary`); anything malformed is a GGUFError."""
        try:
            return cls(*gguf_vocabulary(gguf))
        except ValueError as e:
            raise GGUFError(f"{gguf.path}: {e}") from None

    def __len__(self):
        return len(self.tokens)

    def merge_steps(self, piece):
        """BPE of one pre-tokenized piece, step by step: the list of its symbols before the first merge and after
        each one.  A step joins every occurrence of the adjacent pair of lowest merge rank."""
        word = [self._to_symbol[b] for b in piece.encode("utf-8")] if not _is_symbols(piece) else list(piece)
        steps = [word]
        while len(word) > 1:
            ranked = [(self.ranks[p], i) for i, p in enumerate(zip(word, word[1:])) if p in self.ranks]
            if not ranked:
                break
            best = word[min(ranked)[1]], word[min(ranked)[1] + 1]
            merged, i = [], 0
            while i < len(word):  # join every occurrence of the best pair, left to right
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
            steps.append(word)
        return steps

    def merge(self, symbols):
        """The final symbols of :meth:`merge_steps`, in O(n log n): a heap of the adjacent pairs (lowest rank,
        then leftmost, first) over a linked list of the symbols, each merge pushing the two pairs it makes —
        merge_steps rebuilds the word at every step, quadratic in a long piece (16,000 random letters: 12.7 s;
        this: tenths).  The same result: a step of merge_steps joins every occurrence of its pair left to right,
        the heap takes them one after another in the same order (tests/test_smollm2.py checks both, and
        tokenizers, on the texts and on random words)."""
        sym = list(symbols)
        nxt = list(range(1, len(sym))) + [-1]
        prev = list(range(-1, len(sym) - 1))
        heap = [(self.ranks[p], i, *p) for i, p in enumerate(zip(sym, sym[1:])) if p in self.ranks]
        heapq.heapify(heap)
        while heap:
            _, i, a, b = heapq.heappop(heap)
            j = nxt[i]
            if sym[i] != a or j < 0 or sym[j] != b:  # a pair that an earlier merge took apart
                continue
            sym[i], sym[j] = a + b, None
            nxt[i] = nxt[j]
            if nxt[i] >= 0:
                prev[nxt[i]] = i
            for left, right in ((prev[i], i), (i, nxt[i])):  # the two pairs the new symbol is part of
                if left >= 0 and right >= 0 and (sym[left], sym[right]) in self.ranks:
                    heapq.heappush(heap, (self.ranks[sym[left], sym[right]], left, sym[left], sym[right]))
        return [s for s in sym if s is not None]

    def _merge(self, piece):
        """BPE of one pre-tokenized piece (already in byte symbols): the ids of its final symbols."""
        word = self.merge(piece)
        unknown = [s for s in word if s not in self.ids]
        if unknown:  # a byte the vocabulary has no token for (SmolLM2 lacks 21): dropped, as tokenizers does
            raw = bytes(self._to_byte[c] for s in unknown for c in s if c in self._to_byte)
            warnings.warn(UnknownBytesWarning(
                f"{raw.decode('utf-8', 'backslashreplace')!r} (byte {' '.join(f'0x{b:02x}' for b in raw)}) has "
                "no token in the vocabulary: dropped from the ids, as the tokenizers library drops it"), stacklevel=4)
        return tuple(self.ids[s] for s in word if s in self.ids)

    def encode(self, text, special=True):
        """Token ids of text (no BOS/EOS added).  special=True: special-token strings in the text become their
        one id, as Hugging Face's tokenizers do; False: they are spelled out like any other text."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        ids, start = [], 0
        if special and self._special_re is not None:
            for m in self._special_re.finditer(text):
                ids += self._encode_plain(text[start:m.start()]) + [self.special[m.group()]]
                start = m.end()
        return ids + self._encode_plain(text[start:])

    def _encode_plain(self, text):
        out = []
        for piece in pre_tokenize(text):
            out += self._bpe("".join(self._to_symbol[b] for b in piece.encode("utf-8")))
        return out

    def token_bytes(self, i):
        """The bytes token i stands for (a special token: its own UTF-8 text)."""
        if not 0 <= i < len(self.tokens):
            raise ValueError(f"token id must lie in [0, {len(self.tokens)}), got {i}")
        t = self.tokens[i]
        if t in self.special:
            return t.encode("utf-8")
        return bytes(self._to_byte[s] for s in t)

    def decode(self, ids, skip_special=False):
        """The text of ids; bytes that are not valid UTF-8 become U+FFFD."""
        data = b"".join(self.token_bytes(int(i)) for i in ids
                        if not (skip_special and self.tokens[int(i)] in self.special))
        return data.decode("utf-8", errors="replace")


class _Symbols(str):
    """A piece already turned into byte symbols (merge_steps must not encode it again)."""


def _is_symbols(piece):
    return isinstance(piece, _Symbols)


def _merge_word(word, a, b, new):
    """Join every (a, b) in ``word`` (token ids, left to right, an occurrence never overlapping the previous
    one), in place.  Returns the changes to the pair counts: ((x, y), ±1) for each pair that disappears or
    appears — the neighbours' pairs with a and b, and with the new token."""
    changes, i = [], 0
    while i < len(word) - 1:
        if word[i] == a and word[i + 1] == b:
            if i > 0:
                changes += [((word[i - 1], a), -1), ((word[i - 1], new), 1)]
            word[i:i + 2] = [new]
            if i < len(word) - 1:
                changes += [((b, word[i + 1]), -1), ((new, word[i + 1]), 1)]
        i += 1
    return changes


def train_bpe(texts, vocab_size, min_frequency=0):
    r"""Learn byte-level BPE merges from ``texts`` until the vocabulary has ``vocab_size`` tokens.

    The texts are pre-tokenized (:func:`pre_tokenize`: BPE never merges across a piece), each piece turned into
    its bytes' symbols (:func:`byte_to_symbol`), and identical pieces counted once with their frequency n_w. The
    vocabulary starts as the 256 byte symbols (in code-point order: every text stays encodable). Then, again and
    again, the adjacent pair (x, y) with the largest count

    .. math:: c(x, y) = \sum_w n_w \cdot \#\{i : w_i = x,\ w_{i+1} = y\}

    (ties: the pair of smaller token ids) becomes a new token xy, is joined in every piece that holds it, and its
    rank is the order it was learnt in.  Counts are not recomputed from scratch: joining (a, b) inside a piece only
    changes the pairs it touches — (p, a) and (b, q) lose n_w, (p, ab) and (ab, q) gain it — so the counts are
    updated by those changes and a heap yields the next best pair (an entry whose count has changed since it was
    pushed is pushed again with the new count). Training stops early when no pair occurs ``min_frequency`` times
    (or at all).  This is the algorithm of Hugging Face ``tokenizers``' BpeTrainer, which tests/test_bpe.py checks
    it against merge for merge.  Returns a :class:`BPETokenizer`."""
    if not isinstance(vocab_size, int) or vocab_size < 256:
        raise ValueError(f"vocab_size must be an int >= 256 (the byte alphabet), got {vocab_size!r}")
    table = byte_to_symbol()
    counts = collections.Counter()
    for text in ([texts] if isinstance(texts, str) else texts):
        counts.update("".join(table[b] for b in piece.encode("utf-8")) for piece in pre_tokenize(text))
    tokens = sorted(table.values())
    ids = {t: i for i, t in enumerate(tokens)}
    words = [[ids[c] for c in w] for w in counts]
    freq = list(counts.values())
    pair_counts, where = collections.Counter(), collections.defaultdict(set)
    for i, w in enumerate(words):
        for pair in zip(w, w[1:]):
            pair_counts[pair] += freq[i]
            where[pair].add(i)
    heap = [(-c, pair) for pair, c in pair_counts.items()]
    heapq.heapify(heap)
    merges, merged = [], set()
    while len(tokens) < vocab_size and heap:
        count, pair = heapq.heappop(heap)
        if pair in merged:
            continue
        if -count != pair_counts[pair]:  # its count changed since it was pushed
            heapq.heappush(heap, (-pair_counts[pair], pair))
            continue
        if -count < max(1, min_frequency):
            break
        a, b = pair
        new = ids.setdefault(tokens[a] + tokens[b], len(tokens))
        if new == len(tokens):
            tokens.append(tokens[a] + tokens[b])
        merges.append(f"{tokens[a]} {tokens[b]}")
        merged.add(pair)
        touched = set()
        for i in sorted(where.pop(pair)):
            for p, change in _merge_word(words[i], a, b, new):
                pair_counts[p] += change * freq[i]
                if change > 0:
                    where[p].add(i)
                    touched.add(p)
        for p in touched - merged:
            heapq.heappush(heap, (-pair_counts[p], p))
    return BPETokenizer(tokens, merges)


class StreamDecoder:
    """Text of tokens as they arrive: ``feed(id)`` returns the new complete characters, holding back the first
    bytes of a character whose last byte is in a later token (an emoji is often two or three tokens)."""

    def __init__(self, tokenizer, skip_special=False):
        self.tokenizer, self.skip_special = tokenizer, skip_special
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, token_id):
        if self.skip_special and self.tokenizer.tokens[int(token_id)] in self.tokenizer.special:
            return ""
        return self._utf8.decode(self.tokenizer.token_bytes(int(token_id)))

    def flush(self):
        return self._utf8.decode(b"", final=True)


# a chat template is a program from the model file: bounded in what it may build and how long it may loop
TEMPLATE_MAX_CHARS = 1_000_000  # characters of a rendered prompt, and of any string or list it builds
TEMPLATE_MAX_STEPS = 1_000_000  # iterations of range() over one rendering (nested loops multiply)


class ChatTemplateError(ValueError):
    """A chat template that cannot be rendered: a Jinja error, a sandbox refusal, a bound reached, or the
    template's own raise_exception(message) — always 'chat template: …'."""


class _BoundedSandbox(jinja2.sandbox.ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, with a budget of range() steps and a bound on what ``*`` can build."""

    intercepted_binops = frozenset(["*"])

    def __init__(self):
        super().__init__(trim_blocks=True, lstrip_blocks=True)
        self.steps = 0
        self.globals["range"] = self._range
        self.globals["raise_exception"] = _raise_exception

    def _range(self, *args):
        for i in range(*args):
            self.steps += 1
            if self.steps > TEMPLATE_MAX_STEPS:
                raise ChatTemplateError(f"chat template: more than {TEMPLATE_MAX_STEPS:,} loop steps")
            yield i

    def call_binop(self, context, operator, left, right):
        if operator == "*" and isinstance(left, (str, list, tuple)) != isinstance(right, (str, list, tuple)):
            seq, n = (left, right) if isinstance(left, (str, list, tuple)) else (right, left)
            if isinstance(n, int) and len(seq) * n > TEMPLATE_MAX_CHARS:
                raise ChatTemplateError(f"chat template: a repetition of {len(seq) * n:,} items (at most "
                                        f"{TEMPLATE_MAX_CHARS:,})")
        return super().call_binop(context, operator, left, right)


def _raise_exception(message):
    """What Hugging Face's chat templates call to refuse a conversation (e.g. roles out of order)."""
    raise ChatTemplateError(f"chat template: {message}")


def render_chat(template, messages, add_generation_prompt=True, **variables):
    """The prompt text for ``messages`` ([{"role": …, "content": …}, …]) by the model's own chat template (a
    Jinja template stored in its file), rendered in a sandbox as Hugging Face's ``apply_chat_template`` does —
    with ``raise_exception`` defined, at most TEMPLATE_MAX_STEPS range() steps and TEMPLATE_MAX_CHARS characters;
    any failure is a :class:`ChatTemplateError`."""
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ValueError("messages must be a non-empty list of {'role': ..., 'content': ...} dicts")
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or not isinstance(msg.get("role"), str) or not isinstance(msg.get("content"),
                                                                                                str):
            raise ValueError(f"messages[{i}] must be a dict with str 'role' and 'content', got {msg!r}")
    if not isinstance(template, str):
        raise ChatTemplateError(f"chat template: must be text, got {type(template).__name__}")
    out, size = [], 0
    try:
        pieces = _BoundedSandbox().from_string(template).generate(
            messages=list(messages), add_generation_prompt=add_generation_prompt, **variables)
        for piece in pieces:
            size += len(piece)
            if size > TEMPLATE_MAX_CHARS:
                raise ChatTemplateError(f"chat template: a prompt of more than {TEMPLATE_MAX_CHARS:,} characters")
            out.append(piece)
    except jinja2.TemplateError as e:  # syntax, undefined names, the sandbox's refusals
        raise ChatTemplateError(f"chat template: {type(e).__name__}: {e}") from None
    except RecursionError:
        raise ChatTemplateError("chat template: recursion too deep") from None
    return "".join(out)
