r"""The decoder-model protocol: what decoding, serving, compression and speculative decoding ask of a model,
declared once.  :class:`~transformer_np.DecoderLM` (trained here) and the pretrained LLMs
(:class:`~transformer_np.pretrained.llama.LlamaModel`) implement it; code above this floor reads these names
and never asks a model which family it belongs to.

    model.config.n_layers          L, the decoder blocks (one KV cache layer each)
    model.config.kv_heads          H_kv, key/value heads (H without grouped-query attention)
    model.config.d_head            D
    model.config.vocab_size        V
    model.config.max_len           the longest context
    model.config.tied_embeddings   whether the output layer is the embedding table
    model.config.windows           per layer: the keys its queries see back, W (a sliding window), or None (all)
    model.config.with_layers(n)    the same config with n decoder blocks
    model.params                   the params tree: "embed"/"table", "decoder"/"layers"/i/…, …
    model.step(ids, positions=None, key_mask=None, cache=None, last_only=False, need_weights=False)
                                   -> logits (B, T or 1, V); need_weights: (logits, [weights (B, H, T, S)])
    model.attention(ids)           -> [attention weights (B, H, T, T) of each block]
    model.with_params(params, config=None) -> the same model over other weights (nothing else copied)

A :class:`FeatureLM` also shows the hidden state its logits are read from (speculative heads draft from it):

    model.features(ids, cache=None, positions=None, key_mask=None)
                                   -> (B, T, C), the last block's output after the final norm
    model.output_weight()           -> (C, V): logits = features @ output_weight()
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from ..core.tree import HoldsParams


class DecoderModel(HoldsParams, ABC):
    """A decoder-only language model as the decoding sessions see it: ``config`` and ``params`` attributes and
    the methods below (the module docstring lists the config's names)."""

    @abstractmethod
    def step(self, ids, positions=None, key_mask=None, cache=None, last_only=False, need_weights=False):
        """Logits (B, T, V) at ids (B, T) with a decoding session's per-token positions, key mask (B, 1, 1, S) and
        KV cache (ids then being the new tokens only); last_only: (B, 1, V), the last position's; need_weights:
        (logits, [every block's attention weights (B, H, T, S)])."""

    @abstractmethod
    def attention(self, ids):
        """Every block's self-attention weights for ids (B, T): a list of L arrays (B, H, T, T)."""


class TextLLM(DecoderModel):
    """A pretrained LLM with its tokenizer (SmolLM2, Gemma 3): text in and out, for the commands and the server.
    Also ``eos_id`` (the token that ends its turn or text, or None), ``name`` and ``chat_template`` (the file's
    Jinja chat template; None for a base model, which continues text and cannot chat)."""

    chat_template = None

    @abstractmethod
    def tokenize(self, text):
        """The ids of ``text``, no special token added."""

    @abstractmethod
    def detokenize(self, ids, skip_special=False):
        """The text of ``ids``."""

    @abstractmethod
    def prompt_ids(self, text):
        """The ids a generation continuing ``text`` starts from: tokenize(text), after the BOS token where the
        model's file says to add one (Gemma's)."""


class FeatureLM(DecoderModel):
    """A decoder model whose logits are a linear readout of its last hidden state: logits = f W_out, where f is the
    last block's output after the final norm (a Llama-family model).  EAGLE's draft head
    (:mod:`transformer_np.efficient.draft`) learns to predict the next f and reads it out through the same W_out."""

    @abstractmethod
    def features(self, ids, cache=None, positions=None, key_mask=None):
        """f (B, T, C) at ids (B, T), continuing ``cache`` as :meth:`step` does (positions, key_mask: step's;
        key_mask may also be (B, 1, T, S): a mask per query, such as a token tree's); step's logits are
        f @ output_weight()."""

    @abstractmethod
    def output_weight(self):
        """W_out (C, V): the output layer (the embedding table's transpose when they are tied)."""
