r"""The models: the encoder-decoder of the source document (:class:`Transformer`), a decoder-only language
model (:class:`DecoderLM`) and an encoder classifier (:class:`Classifier`) — each a function of (params, ids,
config) and a thin class holding a config and a params tree that calls it.
"""

from __future__ import annotations

from ..core.backend import array_namespace, device
from ..core.checks import check_ids
from ..core.embeddings import sinusoidal_positions, token_embedding
from ..core.masks import causal_mask, combine_masks, padding_keys
from ..core.nn import linear, mean_pool, softmax
from ..core.tree import HoldsParams, count_params
from .checkpoint import load_checkpoint, save_checkpoint
from .config import TransformerConfig
from .params import init_params
from .protocol import DecoderModel
from .stacks import decoder, encoder_forward


def embed(ids, p, cfg, offset=0, positions=None):
    r"""x = Emb(ids) + PE[pos]: token embedding (scaled by \sqrt{C}) plus sin-cos position.

    ids: int (B, T) -> (B, T, C).  Positions are offset … offset+T-1 for every row, or ``positions``
    (B, T) per token (left-padded batches, where each row counts its own positions).  With
    cfg.positional_encoding False no position is added (x = Emb(ids): an ablation)."""
    if ids.ndim != 2:
        raise ValueError(f"token ids must be (B, T), got shape {tuple(ids.shape)}")
    x = token_embedding(ids, p["table"], scale=cfg.scale_embedding)  # (B, T, C)
    if positions is None:
        if offset + ids.shape[1] > cfg.max_len:
            raise ValueError(f"position {offset + ids.shape[1] - 1} is past max_len={cfg.max_len}")
        xp = array_namespace(ids)
        positions = xp.arange(offset, offset + ids.shape[1], device=device(ids))  # (T,): broadcasts over B
    else:
        check_ids("positions", positions, cfg.max_len)
    if not cfg.positional_encoding:  # the ablation: attention alone then cannot tell positions apart
        return x
    return x + sinusoidal_positions(positions, cfg.d_model, dtype=x.dtype)  # (B, T, C)


def check_tokens(name, ids, cfg, offset=0):
    """Token ids (B, len) in [0, V), short enough for the positional table."""
    check_ids(name, ids, cfg.vocab_size)
    if ids.ndim != 2 or ids.shape[1] < 1 or offset + ids.shape[1] > cfg.max_len:
        raise ValueError(f"{name} must be (B, len) with 1 <= len <= max_len={cfg.max_len}"
                         f"{f' - {offset} cached' if offset else ''}, got shape {tuple(ids.shape)}")


def output_logits(y, params, cfg):
    r"""logits = y W_out + b, or y Eᵀ with the embedding table E when cfg.tie_embeddings (paper §3.4: "we share the
    same weight matrix between the two embedding layers and the pre-softmax linear transformation").
    y: (..., C) -> (..., V)."""
    return linear(y, params["embed"]["table"].T) if cfg.tie_embeddings else linear(y, **params["out"])


# --- the model functions ---------------------------------------------------------------------------
def encode(params, src, cfg, src_mask=None, need_weights=False):
    r"""memory = Encoder(Emb(src) + PE).  src: int (B, S).
    Returns (memory (B, S, C), key mask of the source's padding (B, 1, 1, S) or None, [weights per layer])."""
    check_tokens("src", src, cfg)
    src_keys = padding_keys(src, cfg.pad_id)  # (B, 1, 1, S)
    x = embed(src, params["embed"], cfg)  # (B, S, C)
    memory, weights, _ = encoder_forward(x, params["encoder"], cfg, mask=combine_masks(src_mask, src_keys),
                                         keep=need_weights)
    return memory, src_keys, weights


def decode(params, tgt, memory, cfg, tgt_mask=None, memory_mask=None, memory_keys=None, cache=None,
           need_weights=False):
    r"""logits = Linear(Decoder(Emb(tgt) + PE, memory)).  tgt: int (B, T), memory: (B, S, C).

    tgt_mask defaults to the causal mask.  With ``cache`` (one LayerCache per decoder layer), tgt holds only
    the new tokens, which sit after the cached positions; target padding is then not masked (generation
    keeps every row the same length).  Returns (logits (B, T, V), [(self, cross) weights per layer])."""
    past = 0 if cache is None else cache[0].length
    check_tokens("tgt", tgt, cfg, offset=past)
    if tgt.shape[0] != memory.shape[0]:
        raise ValueError(f"tgt and memory must share the batch size, got {tgt.shape[0]} and {memory.shape[0]}")
    if tgt_mask is None:
        tgt_mask = causal_mask(tgt.shape[1], past + tgt.shape[1], like=tgt)  # (T, S_past + T)
    tgt_keys = padding_keys(tgt, cfg.pad_id) if cache is None else None
    y = embed(tgt, params["embed"], cfg, offset=past)  # (B, T, C)
    out, weights = decoder(y, memory, params["decoder"], cfg, self_mask=combine_masks(tgt_mask, tgt_keys),
                           cross_mask=combine_masks(memory_mask, memory_keys), need_weights=need_weights,
                           cache=cache)
    return output_logits(out, params, cfg), weights  # (B, T, V)


def transformer_logits(params, src, tgt, cfg, src_mask=None, tgt_mask=None, memory_mask=None,
                       need_weights=False):
    r"""logits = Linear(Decoder(Emb(tgt) + PE, Encoder(Emb(src) + PE)))     (paper fig. 1)

    src: int (B, S)  tgt: int (B, T).  Masks (bool, True = may attend): src_mask (…, S, S),
    tgt_mask (…, T, T) — default causal —, memory_mask (…, T, S).  With cfg.pad_id set, padding keys
    are masked too.  Returns (logits (B, T, V), attention dict, empty unless need_weights).
    """
    check_tokens("src", src, cfg)
    check_tokens("tgt", tgt, cfg)
    if src.shape[0] != tgt.shape[0]:
        raise ValueError(f"src and tgt must share the batch size, got {src.shape[0]} and {tgt.shape[0]}")
    memory, src_keys, enc_w = encode(params, src, cfg, src_mask, need_weights)  # (B, S, C)
    logits, dec_w = decode(params, tgt, memory, cfg, tgt_mask, memory_mask, src_keys, need_weights=need_weights)
    attention = {}
    if need_weights:
        attention = {"encoder": enc_w, "decoder_self": [w[0] for w in dec_w],
                     "decoder_cross": [w[1] for w in dec_w]}
    return logits, attention


def lm_logits(params, ids, cfg, positions=None, key_mask=None, cache=None, need_weights=False, last_only=False):
    r"""logits = Linear(LN(Blocks(Emb(ids) + PE)))  for a decoder-only (GPT-style) language model: every
    block is an encoder layer under the causal mask.

    ids: int (B, T).  positions: optional (B, T) per-token positions (left-padded batches).  key_mask:
    optional bool (B, 1, 1, S_past + T), False at padding keys (default: from cfg.pad_id, without a cache).
    cache: one LayerCache per layer; ids are then the new tokens only.  last_only: logits of the last position
    only, (B, 1, V) — all that decoding needs, and the output layer's T·C·V product is skipped.
    Returns (logits (B, T, V), [self-attention weights per layer] if need_weights else [])."""
    past = 0 if cache is None else cache[0].length
    check_tokens("ids", ids, cfg, offset=past)
    if key_mask is None and cache is None:
        key_mask = padding_keys(ids, cfg.pad_id)  # (B, 1, 1, T)
    mask = combine_masks(causal_mask(ids.shape[1], past + ids.shape[1], like=ids), key_mask)
    x = embed(ids, params["embed"], cfg, offset=past, positions=positions)  # (B, T, C)
    x, weights, _ = encoder_forward(x, params["decoder"], cfg, mask=mask, cache=cache, keep=need_weights)
    return output_logits(x[:, -1:, :] if last_only else x, params, cfg), weights  # (B, T, V)


def classifier_logits(params, ids, cfg, need_weights=False):
    r"""logits = Linear(mean_{t: not padding} Encoder(Emb(ids) + PE)_t): an encoder-only classifier.
    ids: int (B, T), padded with cfg.pad_id.  Returns (logits (B, n_classes), [weights per layer])."""
    check_tokens("ids", ids, cfg)
    keys = padding_keys(ids, cfg.pad_id)  # (B, 1, 1, T)
    h, weights, _ = encoder_forward(embed(ids, params["embed"], cfg), params["encoder"], cfg, mask=keys,
                                    keep=need_weights)
    pooled = mean_pool(h, not_padding(ids, cfg.pad_id))  # (B, C)
    return linear(pooled, **params["out"]), weights


def not_padding(ids, pad_id):
    """(B, T) bool: True at the tokens that are not padding (all of them when pad_id is None)."""
    xp = array_namespace(ids)
    return xp.ones(ids.shape, dtype=xp.bool, device=device(ids)) if pad_id is None else ids != pad_id


# --- classes: a config and a params tree, calling the functions above --------------------------------
class Model(HoldsParams):
    """What every model class shares: a frozen config, a params tree, counting, saving and loading."""

    architecture = None
    task = tokenizer = None  # set for a shipped task model loaded by name (transformer_np.load("dates"))

    def __init__(self, cfg, params=None, seed=0):
        if cfg.architecture != self.architecture:
            raise ValueError(f"{type(self).__name__} needs architecture={self.architecture!r}, "
                             f"got {cfg.architecture!r}")
        self.config = cfg
        self.params = init_params(cfg, seed) if params is None else params

    @classmethod
    def from_config(cls, cfg, params=None, seed=0):
        model = cls.__new__(cls)
        Model.__init__(model, cfg, params, seed)
        return model

    def num_parameters(self):
        return count_params(self.params)

    def save(self, path):
        """Write config and params to one .npz (no pickle), atomically."""
        save_checkpoint(path, self.params, self.config)

    @classmethod
    def load(cls, path):
        params, cfg = load_checkpoint(path)
        return cls.from_config(cfg, params)


class Transformer(Model):
    r"""The source document's ``Transformer(d_model, nhead, num_layers, num_classes)``, rebuilt in NumPy.

    ``Transformer(d_model, nhead, num_layers, num_classes)(src, tgt)`` maps token ids src (B, S) and
    tgt (B, T) to logits (B, T, num_classes), as the listing's ``forward`` does.  ``num_classes`` is the
    size of the vocabulary — the output layer scores every token — not a number of classes:
    ``config.vocab_size``.  The listing and its five bugs are in docs/source_model.md; fixed here:

    1. ``init_weight`` is undefined, and ``nn.Parameter(init_weight(d_model))`` would be a trainable vector
       of shape (d_model,), added identically at every position — no position information at all.  Here:
       the sin-cos table of shape (max_len, d_model), sliced to the sequence length (paper §3.5).
    2. ``tgt`` was fed to nn.Transformer as raw token ids.  Here it is embedded and position-encoded like src.
    3. ``nn.Transformer`` has no ``num_layers`` argument.  Here num_layers sets both the encoder and the
       decoder depth (torch: num_encoder_layers = num_decoder_layers = num_layers).
    4. With ``tgt_mask=None`` the decoder could attend to future target tokens.  Here tgt_mask defaults to
       the causal mask.
    5. Embeddings were not scaled; here they are multiplied by sqrt(d_model) (paper §3.4;
       ``scale_embedding=False`` turns it off).
    Conventions that differ from the listing: arrays are batch-first (B, len); masks are boolean with
    **True where attention is allowed** (torch's bool masks mean the opposite — use
    ``interop.from_torch`` to call with torch's conventions).  Keyword arguments are TransformerConfig
    fields (dim_feedforward → d_ff, 2048 by default as in nn.Transformer).
    """

    architecture = "encoder-decoder"

    def __init__(self, d_model=512, nhead=8, num_layers=6, num_classes=1000, *, seed=0, params=None,
                 **config):
        cfg = TransformerConfig(d_model=d_model, n_heads=nhead, n_encoder_layers=num_layers,
                                n_decoder_layers=num_layers, vocab_size=num_classes, **config)
        super().__init__(cfg, params, seed)

    def __call__(self, src, tgt, src_mask=None, tgt_mask=None, memory_mask=None):
        """logits (B, T, V) for token ids src (B, S) and tgt (B, T)."""
        return transformer_logits(self.params, src, tgt, self.config, src_mask, tgt_mask, memory_mask)[0]

    forward = __call__

    def forward_with_attention(self, src, tgt, src_mask=None, tgt_mask=None, memory_mask=None):
        """(logits, {"encoder": [...], "decoder_self": [...], "decoder_cross": [...]}) per layer (B, H, ·, ·)."""
        return transformer_logits(self.params, src, tgt, self.config, src_mask, tgt_mask, memory_mask,
                                  need_weights=True)

    def predict_proba(self, src, tgt, **masks):
        """softmax over the vocabulary of the logits: (B, T, V), rows sum to 1."""
        return softmax(self(src, tgt, **masks), axis=-1)

    def __repr__(self):
        c = self.config
        return (f"Transformer(d_model={c.d_model}, nhead={c.n_heads}, layers={c.n_encoder_layers}+"
                f"{c.n_decoder_layers}, num_classes={c.vocab_size}, params={self.num_parameters():,})")


class DecoderLM(Model, DecoderModel):
    r"""A decoder-only (GPT-style) language model built from the same layer functions: token embedding +
    sin-cos positions, L causal self-attention blocks (pre-LN by default in :meth:`TransformerConfig.lm_tiny`),
    a final layer norm and the output projection.  ``model(ids)`` returns logits (B, T, V)."""

    architecture = "decoder-only"

    def __call__(self, ids, positions=None, key_mask=None):
        return lm_logits(self.params, ids, self.config, positions, key_mask)[0]

    def step(self, ids, positions=None, key_mask=None, cache=None, last_only=False, need_weights=False):
        """Logits (B, T, V) at ids with a decoding session's per-token positions, key mask and KV cache
        (last_only: (B, 1, V), the last position's; need_weights: also every block's attention weights)."""
        logits, weights = lm_logits(self.params, ids, self.config, positions, key_mask, cache, need_weights, last_only)
        return (logits, weights) if need_weights else logits

    def forward_with_attention(self, ids):
        """(logits, [self-attention weights (B, H, T, T) per layer])."""
        return lm_logits(self.params, ids, self.config, need_weights=True)

    def attention(self, ids):
        """Every block's self-attention weights (B, H, T, T) for ids (B, T) (the model protocol's name)."""
        return self.forward_with_attention(ids)[1]

    def __repr__(self):
        c = self.config
        return (f"DecoderLM(d_model={c.d_model}, n_heads={c.n_heads}, layers={c.n_decoder_layers}, "
                f"vocab={c.vocab_size}, params={self.num_parameters():,})")


class Classifier(Model):
    r"""An encoder classifier: the encoder stack, mean pooling over the non-padding tokens, a linear layer to
    cfg.n_classes scores.  ``model(ids)`` returns logits (B, n_classes); ``predict(ids)`` the classes (B,)."""

    architecture = "encoder-classifier"

    def __call__(self, ids):
        return classifier_logits(self.params, ids, self.config)[0]

    def forward_with_attention(self, ids):
        """(logits, [self-attention weights (B, H, T, T) per layer])."""
        return classifier_logits(self.params, ids, self.config, need_weights=True)

    def predict(self, ids):
        """The most likely class of each row: int (B,)."""
        return array_namespace(ids).argmax(self(ids), axis=-1)

    def __repr__(self):
        c = self.config
        return (f"Classifier(d_model={c.d_model}, n_heads={c.n_heads}, layers={c.n_encoder_layers}, "
                f"classes={c.n_classes}, params={self.num_parameters():,})")


MODELS = {cls.architecture: cls for cls in (Transformer, DecoderLM, Classifier)}


def load_model(path):
    """The model a checkpoint holds — a Transformer, a DecoderLM or a Classifier, as its config says."""
    params, cfg = load_checkpoint(path)
    return MODELS[cfg.architecture].from_config(cfg, params)
