"""The model's configuration: one frozen dataclass, with named presets."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from ..core.checks import check_bool, check_choice, check_int, check_positive_int, check_real
from ..core.nn import ACTIVATIONS

DTYPES = ("float32", "float64")
ARCHITECTURES = ("encoder-decoder", "decoder-only", "encoder-classifier")


@dataclass(frozen=True)
class TransformerConfig:
    d_model: int = 512  # C, width of every token vector
    n_heads: int = 8  # H; d_head D = C / H
    n_encoder_layers: int = 6  # L on the encoder side
    n_decoder_layers: int = 6  # L on the decoder side
    d_ff: int = 2048  # F, hidden width of the position-wise feed-forward network
    vocab_size: int = 1000  # V (the source document's num_classes): shared by source, target, output
    max_len: int = 512  # rows of the sinusoidal position table: longest sequence accepted
    activation: str = "relu"  # FFN non-linearity: "relu" (paper) or "gelu" (exact, erf form)
    norm_first: bool = False  # False: post-LN, LN(x + f(x)) (paper); True: pre-LN, x + f(LN(x))
    final_norm: bool = True  # a LayerNorm after each stack, as nn.Transformer has
    layer_norm_eps: float = 1e-5  # epsilon inside the square root of layer norm
    dropout: float = 0.1  # P_drop on embeddings and sublayer outputs, in training only (paper §5.4)
    scale_embedding: bool = True  # multiply token embeddings by sqrt(d_model) (paper §3.4)
    pad_id: int | None = None  # if set, tokens equal to pad_id are masked out as keys
    dtype: str = "float32"  # parameter dtype
    architecture: str = "encoder-decoder"  # or "decoder-only" (GPT-style LM) or "encoder-classifier"
    n_classes: int = 2  # classes of an encoder-classifier (mean-pooled encoder output -> linear)
    n_kv_heads: int | None = None  # H_kv key/value heads (grouped-query attention); None: H, multi-head
    tie_embeddings: bool = False  # logits = y Eᵀ with the embedding table E, no separate output layer (§3.4)
    positional_encoding: bool = True  # add the sin-cos table to the embeddings; False: no position signal (ablation)

    def __post_init__(self):
        """Every field checked for type and range, each error naming the field.  NumPy integers and floats are
        accepted and stored as Python numbers (the config is written to JSON)."""
        fix = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 - frozen dataclass
        for name in ("d_model", "n_heads", "d_ff", "vocab_size", "max_len", "n_classes"):
            fix(name, check_positive_int(name, getattr(self, name)))
        for name in ("n_encoder_layers", "n_decoder_layers"):
            fix(name, check_int(name, getattr(self, name), low=0))
        for name in ("norm_first", "final_norm", "scale_embedding", "tie_embeddings",
                     "positional_encoding"):
            check_bool(name, getattr(self, name))
        fix("layer_norm_eps", check_real("layer_norm_eps", self.layer_norm_eps, low=0.0, low_open=True))
        fix("dropout", check_real("dropout", self.dropout, low=0.0, high=1.0, high_open=True))
        if self.n_kv_heads is not None:
            fix("n_kv_heads", check_positive_int("n_kv_heads", self.n_kv_heads))
            if self.n_heads % self.n_kv_heads:
                raise ValueError(f"n_heads={self.n_heads} must be a multiple of n_kv_heads={self.n_kv_heads}")
        if self.pad_id is not None:
            fix("pad_id", check_int("pad_id", self.pad_id, low=0, high=self.vocab_size - 1))
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}")
        check_choice("activation", self.activation, ACTIVATIONS)
        check_choice("dtype", self.dtype, DTYPES)
        check_choice("architecture", self.architecture, ARCHITECTURES)
        if self.architecture == "encoder-classifier" and self.n_decoder_layers:
            raise ValueError(
                f"an encoder classifier has no decoder: n_decoder_layers must be 0, got {self.n_decoder_layers}"
            )
        if self.tie_embeddings and self.architecture == "encoder-classifier":
            raise ValueError("tie_embeddings needs an output over the vocabulary; an encoder classifier has classes")
        if self.architecture == "decoder-only" and self.n_encoder_layers:
            raise ValueError(
                f"a decoder-only model has no encoder: n_encoder_layers must be 0, got {self.n_encoder_layers}"
            )

    @property
    def d_head(self):
        """D = C / H"""
        return self.d_model // self.n_heads

    @property
    def kv_heads(self):
        """H_kv: the key/value heads (n_heads unless grouped-query attention is configured)."""
        return self.n_heads if self.n_kv_heads is None else self.n_kv_heads

    @property
    def n_layers(self):
        """L of the model protocol (model/protocol.py): the decoder's blocks — the encoder's for an encoder-only
        classifier, which has no decoder."""
        return self.n_encoder_layers if self.architecture == "encoder-classifier" else self.n_decoder_layers

    @property
    def windows(self):
        """Each decoder layer's attention window (model protocol): None, every layer sees every earlier key."""
        return (None,) * self.n_layers

    gated_ffn = False  # the FFN is the paper's max(0, x W1 + b1) W2 + b2 (or GELU), not a gated (SwiGLU) one

    @property
    def tied_embeddings(self):
        """The model protocol's name for the ``tie_embeddings`` field (kept: it is in saved checkpoints)."""
        return self.tie_embeddings

    def with_layers(self, n):
        """The same config with n decoder blocks (encoder blocks for a classifier)."""
        field = "n_encoder_layers" if self.architecture == "encoder-classifier" else "n_decoder_layers"
        return dataclasses.replace(self, **{field: n})

    @classmethod
    def paper_base(cls, vocab_size=37000, **overrides):
        """The paper's base model: C=512, H=8, 6+6 layers, F=2048 (vocab: the paper's shared BPE)."""
        return cls(vocab_size=vocab_size, **overrides)

    @classmethod
    def tiny(cls, **overrides):
        """A model small enough for tests: C=16, H=4, 2+2 layers, F=32, V=11."""
        fields = dict(d_model=16, n_heads=4, n_encoder_layers=2, n_decoder_layers=2, d_ff=32,
                      vocab_size=11, max_len=64)
        return cls(**{**fields, **overrides})

    @classmethod
    def lm_tiny(cls, **overrides):
        """A decoder-only language model small enough for tests: C=16, H=4, 2 layers, F=32, V=11."""
        fields = dict(d_model=16, n_heads=4, n_encoder_layers=0, n_decoder_layers=2, d_ff=32, vocab_size=11,
                      max_len=64, norm_first=True, activation="gelu", architecture="decoder-only")
        return cls(**{**fields, **overrides})

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def to_json(self):
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text):
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as e:
            raise ValueError(f"config is not valid JSON ({type(e).__name__}: {e})") from None
        if not isinstance(data, dict):
            raise ValueError(f"config must be a JSON object of fields, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"config has unknown fields {unknown}")
        return cls(**data)
