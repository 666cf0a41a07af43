r"""PyTorch interop: ``from_torch`` turns torch modules into NumPy equivalents, ``to_torch`` goes back.

The NumPy equivalents take **the same arguments and mask conventions as the torch module** and return
what it returns (as NumPy arrays).  torch's masks are converted here, and only here:

* a bool mask means True = *masked out* (ours: True = may attend), so it is inverted;
* a float mask is *added* to the scores: its -inf entries become masked keys, the rest a score bias;
* ``key_padding_mask`` (B, S) becomes a (B, 1, 1, S) key mask; ``attn_mask`` (B·H, T, S) becomes (B, H, T, S).

Deviation: a query whose keys are all masked gets output from zero attention weights (torch: NaN).
The equivalents compute inference (dropout off): call torch modules in ``eval()`` mode to compare.
torch is imported only when these functions are called.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .core.attention import multi_head_attention
from .core.embeddings import sinusoidal_positional_encoding
from .core.masks import combine_masks
from .model.config import TransformerConfig
from .model.layers import decoder_layer, encoder_layer
from .model.models import Transformer
from .model.params import param_shapes
from .model.stacks import decoder, encoder
from .model.weight_names import (
    TORCH_ATTENTION,
    TORCH_DECODER_LAYER,
    TORCH_ENCODER_LAYER,
    export_weights,
    fuse_in_proj,
    import_weights,
    linear_names,
    split_in_proj,
    torch_stack,
)

__all__ = ["from_torch", "to_torch", "MultiheadAttention", "TransformerEncoderLayer",
           "TransformerDecoderLayer", "TorchTransformer", "TorchStyleTransformer", "source_model_torch"]


# --- torch -> NumPy: weights, through the tables of model.weight_names -----------------------------------
def _state(module):
    """The module's state dict as NumPy arrays, torch's fused in_proj split into q / k / v."""
    return split_in_proj({k: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()})


def _check_mha(mha):
    if mha.bias_k is not None or mha.add_zero_attn:
        raise NotImplementedError("nn.MultiheadAttention with add_bias_kv or add_zero_attn is not supported")


def _activation_name(layer):
    import torch.nn.functional as F

    act = layer.activation
    if act is F.relu or type(act).__name__ == "ReLU":
        return "relu"
    if act is F.gelu or (type(act).__name__ == "GELU" and getattr(act, "approximate", "none") == "none"):
        return "gelu"
    raise NotImplementedError(f"activation {act!r} is not supported (relu and exact gelu are)")


def _layer_config(layer, n_enc=1, n_dec=1, final_norm=False, **extra):
    return TransformerConfig(
        d_model=layer.self_attn.embed_dim, n_heads=layer.self_attn.num_heads, d_ff=layer.linear1.out_features,
        n_encoder_layers=n_enc, n_decoder_layers=n_dec, activation=_activation_name(layer),
        norm_first=bool(layer.norm_first), layer_norm_eps=float(layer.norm1.eps), final_norm=final_norm,
        dtype=str(layer.linear1.weight.dtype).removeprefix("torch."), **extra)


# --- torch -> NumPy: masks ----------------------------------------------------------------------------
def _torch_mask(m, n_heads=None, name="attn_mask"):
    """A torch attn mask (bool: True = masked; float: added) -> (our bool mask or None, bias or None)."""
    if m is None:
        return None, None
    m = np.asarray(m)
    if m.ndim == 3 and n_heads is not None:  # (B·H, T, S) -> (B, H, T, S)
        if m.shape[0] % n_heads:
            raise ValueError(f"a 3-D {name} must be (B·num_heads, T, S) with num_heads={n_heads}, "
                             f"got shape {m.shape}")
        m = m.reshape(-1, n_heads, *m.shape[1:])
    if m.dtype == np.bool_:
        return ~m, None
    if not np.issubdtype(m.dtype, np.floating):
        raise TypeError(f"torch-style masks must be bool or float, got dtype {m.dtype}")
    neg = np.isneginf(m)
    return (~neg if neg.any() else None), np.where(neg, 0, m).astype(m.dtype)


def _torch_key_padding(m):
    """key_padding_mask (B, S), torch convention -> (mask, bias) broadcastable to (B, H, T, S)."""
    if m is None:
        return None, None
    m = np.asarray(m)
    mask, bias = _torch_mask(m[None] if m.ndim == 1 else m)  # an unbatched input's (S,) -> (1, S)
    return (None if mask is None else mask[:, None, None, :]), (None if bias is None else bias[:, None, None, :])


def _merge(*pairs):
    """Combine several (mask, bias) pairs: masks and-ed, biases added."""
    masks = [m for m, _ in pairs if m is not None]
    biases = [b for _, b in pairs if b is not None]
    return combine_masks(*masks), (sum(biases[1:], biases[0]) if biases else None)


def _seq_first(x, batch_first):
    """torch layouts -> ours (B, T, C): (T, B, C) when not batch_first; unbatched (T, C) gets B = 1."""
    x = np.asarray(x)
    if x.ndim == 2:
        return x[None]
    return x if batch_first else np.swapaxes(x, 0, 1)


def _back(y, like, batch_first):
    if np.asarray(like).ndim == 2:
        return y[0]
    return y if batch_first else np.swapaxes(y, 0, 1)


def _causal_hint(is_causal, attn_mask, name):
    """torch's is_causal is a hint that the given mask is causal: the mask is used as it is, and the hint without
    a mask is an error (as in torch)."""
    if is_causal and attn_mask is None:
        raise ValueError(f"is_causal=True is a hint about {name}, which must then be given (as in torch: use "
                         "nn.Transformer.generate_square_subsequent_mask)")


def _self_masks(is_causal, attn_mask, key_padding_mask, n_heads, name="attn_mask"):
    """(mask, bias) of a self-attention from torch's arguments."""
    _causal_hint(is_causal, attn_mask, name)
    return _merge(_torch_mask(attn_mask, n_heads, name), _torch_key_padding(key_padding_mask))


def _cross_masks(memory_mask, memory_key_padding_mask, n_heads):
    """(mask, bias) of a cross-attention over the memory from torch's arguments."""
    return _merge(_torch_mask(memory_mask, n_heads, "memory_mask"), _torch_key_padding(memory_key_padding_mask))


# --- the NumPy equivalents ----------------------------------------------------------------------------
@dataclasses.dataclass
class MultiheadAttention:
    """NumPy twin of torch.nn.MultiheadAttention (inference)."""

    params: dict
    num_heads: int
    batch_first: bool = False

    def __call__(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                 average_attn_weights=True, is_causal=False):
        q = _seq_first(query, self.batch_first)  # (B, T, C)
        k = _seq_first(key, self.batch_first)  # (B, S, Ck)
        v = _seq_first(value, self.batch_first)  # (B, S, Cv)
        mask, bias = _self_masks(is_causal, attn_mask, key_padding_mask, self.num_heads)
        out, w = multi_head_attention(q, k, v, **self.params, n_heads=self.num_heads, mask=mask, bias=bias)
        out = _back(out, query, self.batch_first)
        if not need_weights:
            return out, None
        w = w.mean(axis=1) if average_attn_weights else w  # (B, T, S) or (B, H, T, S)
        return out, (w[0] if np.asarray(query).ndim == 2 else w)


@dataclasses.dataclass
class TransformerEncoderLayer:
    """NumPy twin of torch.nn.TransformerEncoderLayer (inference)."""

    params: dict
    config: TransformerConfig
    batch_first: bool = False

    def __call__(self, src, src_mask=None, src_key_padding_mask=None, is_causal=False):
        x = _seq_first(src, self.batch_first)
        mask, bias = _self_masks(is_causal, src_mask, src_key_padding_mask, self.config.n_heads, "src_mask")
        y, _ = encoder_layer(x, self.params, self.config, mask=mask, bias=bias)
        return _back(y, src, self.batch_first)


@dataclasses.dataclass
class TransformerDecoderLayer:
    """NumPy twin of torch.nn.TransformerDecoderLayer (inference)."""

    params: dict
    config: TransformerConfig
    batch_first: bool = False

    def __call__(self, tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
                 memory_key_padding_mask=None, tgt_is_causal=False, memory_is_causal=False):
        y, m, H = _seq_first(tgt, self.batch_first), _seq_first(memory, self.batch_first), self.config.n_heads
        self_m, self_b = _self_masks(tgt_is_causal, tgt_mask, tgt_key_padding_mask, H, "tgt_mask")
        cross_m, cross_b = _cross_masks(memory_mask, memory_key_padding_mask, H)
        out, _ = decoder_layer(y, m, self.params, self.config, self_m, cross_m, self_b, cross_b)
        return _back(out, tgt, self.batch_first)


@dataclasses.dataclass
class TorchTransformer:
    """NumPy twin of torch.nn.Transformer (inference): encoder and decoder stacks on embedded inputs."""

    params: dict
    config: TransformerConfig
    batch_first: bool = False

    def __call__(self, src, tgt, src_mask=None, tgt_mask=None, memory_mask=None, src_key_padding_mask=None,
                 tgt_key_padding_mask=None, memory_key_padding_mask=None, src_is_causal=None,
                 tgt_is_causal=None, memory_is_causal=False):
        x, y, H = _seq_first(src, self.batch_first), _seq_first(tgt, self.batch_first), self.config.n_heads
        src_m, src_b = _self_masks(src_is_causal, src_mask, src_key_padding_mask, H, "src_mask")
        memory, _ = encoder(x, self.params["encoder"], self.config, mask=src_m, bias=src_b)
        self_m, self_b = _self_masks(tgt_is_causal, tgt_mask, tgt_key_padding_mask, H, "tgt_mask")
        cross_m, cross_b = _cross_masks(memory_mask, memory_key_padding_mask, H)
        out, _ = decoder(y, memory, self.params["decoder"], self.config, self_m, cross_m, self_b, cross_b)
        return _back(out, tgt, self.batch_first)


@dataclasses.dataclass
class TorchStyleTransformer:
    """The source document's model (NumPy :class:`Transformer`) called with torch's mask conventions,
    as the torch module from :func:`source_model_torch` is: ``forward(src, tgt, src_mask, tgt_mask,
    memory_mask)``, batch-first token ids, tgt_mask None = causal."""

    model: Transformer

    def __call__(self, src, tgt, src_mask=None, tgt_mask=None, memory_mask=None):
        masks = {}
        for name, m in (("src_mask", src_mask), ("tgt_mask", tgt_mask), ("memory_mask", memory_mask)):
            mask, bias = _torch_mask(m)
            if bias is not None and np.any(bias != 0):
                raise NotImplementedError(f"{name}: float masks with finite non-zero entries are not supported here")
            masks[name] = mask
        return self.model(np.asarray(src), np.asarray(tgt), **masks)


def from_torch(module):
    """The NumPy equivalent of a torch module: nn.MultiheadAttention, nn.TransformerEncoderLayer,
    nn.TransformerDecoderLayer, nn.Transformer, or the source document's model (fixed; see
    :func:`source_model_torch`).  Weights are copied; the result is independent of the module."""
    import torch.nn as tnn

    if isinstance(module, tnn.MultiheadAttention):
        _check_mha(module)
        return MultiheadAttention(import_weights(_state(module), TORCH_ATTENTION), module.num_heads,
                                  module.batch_first)
    if isinstance(module, (tnn.TransformerEncoderLayer, tnn.TransformerDecoderLayer)):
        encoder_kind = isinstance(module, tnn.TransformerEncoderLayer)
        _check_mha(module.self_attn)
        table = TORCH_ENCODER_LAYER if encoder_kind else TORCH_DECODER_LAYER
        twin = TransformerEncoderLayer if encoder_kind else TransformerDecoderLayer
        return twin(import_weights(_state(module), table), _layer_config(module), module.self_attn.batch_first)
    if isinstance(module, tnn.Transformer):
        cfg = _stacks_config(module)
        return TorchTransformer(import_weights(_state(module), _stacks_table(cfg)), cfg, module.batch_first)
    if all(hasattr(module, a) for a in ("embedding", "transformer", "fc_out", "positional_encoding")):
        return TorchStyleTransformer(_source_model(module))
    raise TypeError(f"from_torch does not know {type(module).__name__}")


def _stacks_table(cfg, theirs=""):
    return (torch_stack("encoder", cfg.n_encoder_layers, cfg.final_norm, theirs)
            | torch_stack("decoder", cfg.n_decoder_layers, cfg.final_norm, theirs))


def _stacks_config(module, **extra):
    """The config of an nn.Transformer's two stacks (extra: more TransformerConfig fields)."""
    enc, dec = module.encoder, module.decoder
    if (enc.norm is None) != (dec.norm is None):
        raise NotImplementedError("nn.Transformer with a final norm on only one side is not supported")
    for layer in (*enc.layers, *dec.layers):
        _check_mha(layer.self_attn)
    return _layer_config(enc.layers[0], len(enc.layers), len(dec.layers), final_norm=enc.norm is not None,
                         **extra)


def _source_table(cfg):
    return {"embedding.weight": ("embed/table", False), **_stacks_table(cfg, "transformer."),
            **linear_names("fc_out", "out/w", "out/b")}


def _source_model(module):
    if not module.transformer.batch_first:
        raise NotImplementedError("the source model's nn.Transformer must be batch_first=True")
    state = _state(module)
    pe = state.pop("positional_encoding")
    table = sinusoidal_positional_encoding(pe.shape[0], pe.shape[1], dtype=pe.dtype)
    if not np.allclose(pe, table, rtol=0, atol=10 * np.finfo(pe.dtype).eps):
        raise NotImplementedError("positional_encoding must be the sin-cos table (a learned one is not supported)")
    cfg = _stacks_config(module.transformer, vocab_size=module.embedding.num_embeddings, max_len=pe.shape[0],
                         scale_embedding=bool(getattr(module, "scale_embedding", True)))
    return Transformer.from_config(cfg, import_weights(state, _source_table(cfg), template=param_shapes(cfg)))


# --- NumPy -> torch -----------------------------------------------------------------------------------
def source_model_torch():
    """The torch class of the source document's model with its bugs fixed (see :class:`Transformer`):
    sin-cos table buffer ``positional_encoding`` (max_len, d_model), target embedded too, num_layers on
    both sides, causal tgt_mask by default, embeddings scaled by sqrt(d_model), batch-first."""
    import torch
    from torch import nn

    class SourceTransformer(nn.Module):
        def __init__(self, d_model, nhead, num_layers, num_classes, dim_feedforward=2048, max_len=512,
                     dropout=0.0, activation="relu", norm_first=False, scale_embedding=True):
            super().__init__()
            self.scale_embedding = scale_embedding
            self.embedding = nn.Embedding(num_classes, d_model)
            pos = torch.arange(max_len, dtype=torch.float64)[:, None]
            inv = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float64) * (-math.log(10000.0) / d_model))
            pe = torch.zeros(max_len, d_model, dtype=torch.float64)
            pe[:, 0::2] = torch.sin(pos * inv)
            pe[:, 1::2] = torch.cos(pos * inv)[:, : d_model // 2]
            self.register_buffer("positional_encoding", pe)  # float64; cast where used
            self.transformer = nn.Transformer(d_model=d_model, nhead=nhead, num_encoder_layers=num_layers,
                                              num_decoder_layers=num_layers, dim_feedforward=dim_feedforward,
                                              dropout=dropout, activation=activation, norm_first=norm_first,
                                              batch_first=True)
            self.fc_out = nn.Linear(d_model, num_classes)

        def embed(self, ids):
            x = self.embedding(ids) * (math.sqrt(self.embedding.embedding_dim) if self.scale_embedding else 1.0)
            return x + self.positional_encoding[: ids.shape[1]].to(x.dtype)

        def forward(self, src, tgt, src_mask=None, tgt_mask=None, memory_mask=None):
            if tgt_mask is None:
                tgt_mask = nn.Transformer.generate_square_subsequent_mask(tgt.shape[1], dtype=torch.bool)
            out = self.transformer(self.embed(src), self.embed(tgt), src_mask=src_mask, tgt_mask=tgt_mask,
                                   memory_mask=memory_mask)
            return self.fc_out(out)

    return SourceTransformer


def _load_into(module, named):
    """Copy {torch name: array} into the module (torch's in_proj fused where the module has one).  Every
    parameter of the module must be given; a name it lacks is an error, unless it is an all-zero bias
    (a zero bias is no bias: torch's bias=False)."""
    import torch

    state = module.state_dict()
    named = fuse_in_proj(named, state)
    unknown = [k for k, v in named.items() if k not in state and not (k.endswith("bias") and not np.any(v))]
    missing = sorted({name for name, _ in module.named_parameters()} - set(named))
    if unknown or missing:
        raise ValueError(f"weights do not fit {type(module).__name__}: no place for {unknown[:5]}, "
                         f"not given {missing[:5]}")
    state.update({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in named.items() if k in state})
    module.load_state_dict(state)
    return module.eval()


def to_torch(obj):
    """The torch module equivalent to a NumPy equivalent from :func:`from_torch` or a :class:`Transformer`,
    with the weights copied (float dtype and bias setting kept): ``to_torch(from_torch(m))`` computes what
    ``m`` computes."""
    import torch
    from torch import nn

    def layer_kwargs(cfg, params, batch_first):
        return dict(d_model=cfg.d_model, nhead=cfg.n_heads, dim_feedforward=cfg.d_ff, dropout=0.0,
                    activation=cfg.activation, layer_norm_eps=cfg.layer_norm_eps, batch_first=batch_first,
                    norm_first=cfg.norm_first, bias=_has_bias(params), dtype=getattr(torch, cfg.dtype))

    if isinstance(obj, MultiheadAttention):
        p = obj.params
        C, Ck, Cv = p["w_q"].shape[0], p["w_k"].shape[0], p["w_v"].shape[0]
        m = nn.MultiheadAttention(C, obj.num_heads, bias=p["b_q"] is not None, kdim=Ck, vdim=Cv,
                                  batch_first=obj.batch_first, dtype=torch.from_numpy(p["w_q"]).dtype)
        return _load_into(m, export_weights(p, TORCH_ATTENTION))
    if isinstance(obj, TransformerEncoderLayer):
        m = nn.TransformerEncoderLayer(**layer_kwargs(obj.config, obj.params, obj.batch_first))
        return _load_into(m, export_weights(obj.params, TORCH_ENCODER_LAYER))
    if isinstance(obj, TransformerDecoderLayer):
        m = nn.TransformerDecoderLayer(**layer_kwargs(obj.config, obj.params, obj.batch_first))
        return _load_into(m, export_weights(obj.params, TORCH_DECODER_LAYER))
    if isinstance(obj, TorchTransformer):
        c = obj.config
        if not c.final_norm:
            raise NotImplementedError("nn.Transformer always has final norms; config.final_norm is False")
        m = nn.Transformer(num_encoder_layers=c.n_encoder_layers, num_decoder_layers=c.n_decoder_layers,
                           **layer_kwargs(c, obj.params, obj.batch_first))
        return _load_into(m, export_weights(obj.params, _stacks_table(c)))
    if isinstance(obj, (Transformer, TorchStyleTransformer)):
        model = obj.model if isinstance(obj, TorchStyleTransformer) else obj
        c = model.config
        if c.n_encoder_layers != c.n_decoder_layers or not c.final_norm or c.pad_id is not None \
                or c.tie_embeddings or c.kv_heads != c.n_heads:
            raise NotImplementedError("to_torch needs equal encoder/decoder depth, final norms, no pad_id, untied "
                                      "embeddings and multi-head attention (nn.Transformer has no other)")
        m = source_model_torch()(c.d_model, c.n_heads, c.n_encoder_layers, c.vocab_size, c.d_ff, c.max_len,
                                 activation=c.activation, norm_first=c.norm_first,
                                 scale_embedding=c.scale_embedding)
        m = m.to(getattr(torch, c.dtype))
        for mod in m.modules():
            if isinstance(mod, nn.LayerNorm):
                mod.eps = c.layer_norm_eps
        return _load_into(m, export_weights(model.params, _source_table(c)))
    raise TypeError(f"to_torch does not know {type(obj).__name__}")


def _has_bias(params):
    """Whether a layer's (or a stack's) linear maps have biases: torch's bias= for the rebuilt module."""
    first = params["encoder"]["layers"][0] if "encoder" in params else params
    return first["self_attn"]["b_q"] is not None
