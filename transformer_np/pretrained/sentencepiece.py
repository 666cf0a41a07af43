r"""SentencePiece's BPE tokenizer (Gemma's, Llama 1–2's, Mistral's), read from a GGUF file's vocabulary: tokens,
scores and token types — no merge list, unlike byte-level BPE (pretrained/bpe.py).

    text ──▶ pieces split out: control and user-defined tokens ("<start_of_turn>", "\n\n", "<table>", runs of
             spaces), matched longest first, each one token
         ──▶ the rest: every space written "▁" (U+2581), then split into characters
         ──▶ merges: of every adjacent pair whose concatenation is a token, merge the one whose token has the
             highest score (ties: the leftmost), until no pair is a token — a heap of candidate pairs, n log n
         ──▶ each piece its token; a character with no token falls back to its UTF-8 bytes, one "<0xXX>" token each

Byte-level BPE maps every byte to a printable character first, so it needs no fallback; SentencePiece keeps
characters whole and falls back to bytes only for the characters its vocabulary lacks (an emoji, a rare CJK
ideograph).  Decoding joins the pieces, turns "▁" back into spaces and the byte tokens back into bytes.
"""

from __future__ import annotations

import heapq

import numpy as np

from .gguf import GGUFError

SPACE = "\u2581"  # ▁, SentencePiece's visible space
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6  # GGUF's token types


class SentencePieceTokenizer:
    """tokens (list of str), scores (float per token: higher merges first), types (GGUF token types)."""

    def __init__(self, tokens, scores, types, unk_id=None):
        self.tokens = list(tokens)
        self.scores = np.asarray(scores, np.float64)
        self.types = np.asarray(types, np.int64)
        if not len(self.tokens) == len(self.scores) == len(self.types):
            raise ValueError(f"tokens, scores and types must be as many, got {len(self.tokens)}, "
                             f"{len(self.scores)}, {len(self.types)}")
        self.ids = {t: i for i, t in enumerate(self.tokens) if self.types[i] in (NORMAL, USER_DEFINED, CONTROL)}
        self.byte_ids = {}
        for i in np.flatnonzero(self.types == BYTE):
            t = self.tokens[i]
            if len(t) != 6 or not t.startswith("<0x") or not t.endswith(">"):
                raise ValueError(f"byte token {i} is {t!r}, not <0xXX>")
            self.byte_ids[int(t[3:5], 16)] = int(i)
        self.specials = sorted((t for i, t in enumerate(self.tokens) if self.types[i] in (CONTROL, USER_DEFINED)
                                and t), key=len, reverse=True)
        self.special = {t for i, t in enumerate(self.tokens) if self.types[i] == CONTROL}  # skipped on request
        self.unk_id = unk_id

    @classmethod
    def from_gguf(cls, gguf):
        m = gguf.metadata
        if m.get("tokenizer.ggml.model") != "llama":
            raise GGUFError(f"{gguf.path}: tokenizer model {m.get('tokenizer.ggml.model')!r} is not SentencePiece's "
                            "('llama')")
        for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type"):
            if key not in m:
                raise GGUFError(f"{gguf.path}: metadata {key!r} is missing (a SentencePiece vocabulary states it)")
        try:
            return cls(m["tokenizer.ggml.tokens"], m["tokenizer.ggml.scores"], m["tokenizer.ggml.token_type"],
                       m.get("tokenizer.ggml.unknown_token_id"))
        except (ValueError, TypeError) as e:
            raise GGUFError(f"{gguf.path}: {e}") from None

    # --- encoding ---
    def encode(self, text):
        """Token ids of ``text`` (no BOS added)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        ids = []
        for piece, special in self._split_specials(text):
            if special:
                ids.append(self.ids[piece])
            else:
                ids += self._merge(piece.replace(" ", SPACE))
        return ids

    def _split_specials(self, text):
        """[(piece, is a control or user-defined token)]: those tokens matched longest first, left to right."""
        out, start, i = [], 0, 0
        firsts = {t[0] for t in self.specials}
        while i < len(text):
            if text[i] in firsts:
                hit = next((t for t in self.specials if text.startswith(t, i)), None)
                if hit is not None:
                    if start < i:
                        out.append((text[start:i], False))
                    out.append((hit, True))
                    i = start = i + len(hit)
                    continue
            i += 1
        if start < len(text):
            out.append((text[start:], False))
        return out

    def _merge(self, text):
        """SentencePiece's BPE over one piece: the highest-scoring adjacent pair merged first."""
        sym = list(text)  # each symbol's text; "" once merged into its left neighbour
        prev, nxt = list(range(-1, len(sym) - 1)), list(range(1, len(sym) + 1))
        heap = []

        def push(a, b):
            if a < 0 or b >= len(sym):
                return
            i = self.ids.get(sym[a] + sym[b])
            if i is not None and self.types[i] == NORMAL:
                heapq.heappush(heap, (-self.scores[i], a, b, len(sym[a]) + len(sym[b])))

        for a in range(len(sym) - 1):
            push(a, a + 1)
        while heap:
            _, a, b, n = heapq.heappop(heap)
            if not sym[a] or not sym[b] or nxt[a] != b or len(sym[a]) + len(sym[b]) != n:
                continue  # a stale pair: one side has merged since
            sym[a], sym[b] = sym[a] + sym[b], ""
            nxt[a] = nxt[b]
            if nxt[b] < len(sym):
                prev[nxt[b]] = a
            push(prev[a], a)
            push(a, nxt[a])
        ids = []
        for s in sym:
            if not s:
                continue
            i = self.ids.get(s)
            if i is not None:
                ids.append(i)
            else:  # a character the vocabulary lacks: its UTF-8 bytes
                for byte in s.encode("utf-8"):
                    if byte not in self.byte_ids:
                        if self.unk_id is None:
                            raise ValueError(f"no token for {s!r} and no byte token <0x{byte:02X}>")
                        ids.append(self.unk_id)
                        break
                    ids.append(self.byte_ids[byte])
        return ids

    # --- decoding ---
    def token_bytes(self, i):
        """The bytes token ``i`` stands for: a byte token's byte, else its text with "▁" as a space, in UTF-8."""
        i = int(i)
        if not 0 <= i < len(self.tokens):
            raise ValueError(f"token id {i} is outside the vocabulary of {len(self.tokens)}")
        if self.types[i] == BYTE:
            return bytes([int(self.tokens[i][3:5], 16)])
        return self.tokens[i].replace(SPACE, " ").encode("utf-8")

    def decode(self, ids, skip_special=False):
        """The text of ``ids``: "▁" back to spaces, byte tokens back to bytes (invalid UTF-8 becomes U+FFFD)."""
        out = bytearray()
        for i in ids:
            piece = self.token_bytes(i)  # the id checked first
            if not (skip_special and self.types[int(i)] == CONTROL):
                out += piece
        return out.decode("utf-8", errors="replace")
