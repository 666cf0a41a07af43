"""Where other libraries keep our parameters: one table per naming scheme, mapping their weight names to
params-tree paths, and the two loops that use a table in either direction.

A table is ``{their name: (our path, transposed)}``: torch's ``nn.Linear`` and Hugging Face store a weight as
(C_out, C_in) = Wᵀ, we store W (C_in, C_out), so linear weights are transposed at this boundary and nowhere
else.  torch's ``nn.MultiheadAttention`` stacks W_Q, W_K, W_V into one ``in_proj_weight`` (3C, C) (and the three
biases into ``in_proj_bias``); :func:`split_in_proj` and :func:`fuse_in_proj` turn that into the three
``q_proj_weight`` … names the table uses and back.
"""

from __future__ import annotations

import numpy as np

from ..core.tree import SEP, flatten, unflatten
from ..core.weights import StoredWeight


def prefixed(table, theirs, ours):
    """The table with ``theirs`` put before every name of theirs and ``ours`` before every path of ours."""
    return {theirs + name: (ours + path, transposed) for name, (path, transposed) in table.items()}


def linear_names(name, w, b):
    return {f"{name}.weight": (w, True), f"{name}.bias": (b, False)}


def norm_names(name, path):
    return {f"{name}.weight": (f"{path}{SEP}gamma", False), f"{name}.bias": (f"{path}{SEP}beta", False)}


# torch.nn.MultiheadAttention (after split_in_proj) -> attention params
TORCH_ATTENTION = {
    "q_proj_weight": ("w_q", True), "q_proj_bias": ("b_q", False),
    "k_proj_weight": ("w_k", True), "k_proj_bias": ("b_k", False),
    "v_proj_weight": ("w_v", True), "v_proj_bias": ("b_v", False),
    **linear_names("out_proj", "w_o", "b_o"),
}
# torch.nn.TransformerEncoderLayer / TransformerDecoderLayer -> encoder / decoder layer params
TORCH_FFN = {**linear_names("linear1", "ffn/w1", "ffn/b1"), **linear_names("linear2", "ffn/w2", "ffn/b2")}
TORCH_ENCODER_LAYER = {**prefixed(TORCH_ATTENTION, "self_attn.", "self_attn/"), **norm_names("norm1", "norm1"),
                       **TORCH_FFN, **norm_names("norm2", "norm2")}
TORCH_DECODER_LAYER = {**TORCH_ENCODER_LAYER, **prefixed(TORCH_ATTENTION, "multihead_attn.", "cross_attn/"),
                       **norm_names("norm3", "norm3")}

# Hugging Face BertModel -> our BERT params ("bert." prefixes are dropped before the lookup)
HF_BERT_LAYER = {
    **linear_names("attention.self.query", "self_attn/w_q", "self_attn/b_q"),
    **linear_names("attention.self.key", "self_attn/w_k", "self_attn/b_k"),
    **linear_names("attention.self.value", "self_attn/w_v", "self_attn/b_v"),
    **linear_names("attention.output.dense", "self_attn/w_o", "self_attn/b_o"),
    **norm_names("attention.output.LayerNorm", "norm1"),
    **linear_names("intermediate.dense", "ffn/w1", "ffn/b1"),
    **linear_names("output.dense", "ffn/w2", "ffn/b2"),
    **norm_names("output.LayerNorm", "norm2"),
}
HF_BERT_EMBEDDINGS = {
    "embeddings.word_embeddings.weight": ("embed/word", False),
    "embeddings.position_embeddings.weight": ("embed/position", False),
    "embeddings.token_type_embeddings.weight": ("embed/token_type", False),
    **norm_names("embeddings.LayerNorm", "embed/norm"),
}


# a GGUF file of the Llama architecture (llama.cpp's names) -> the Llama params tree (pretrained.llama).  ggml
# keeps a linear weight as (C_out, C_in) rows, as torch does: transposed here, like torch's.
GGUF_LLAMA_LAYER = {
    "attn_norm.weight": ("attn_norm/gamma", False),
    "attn_q.weight": ("attn/w_q", True), "attn_k.weight": ("attn/w_k", True),
    "attn_v.weight": ("attn/w_v", True), "attn_output.weight": ("attn/w_o", True),
    "ffn_norm.weight": ("ffn_norm/gamma", False),
    "ffn_gate.weight": ("ffn/w_gate", True), "ffn_up.weight": ("ffn/w_up", True),
    "ffn_down.weight": ("ffn/w_down", True),
}


def gguf_llama(n_layers, tied=True):
    """The table of a Llama GGUF file with n_layers blocks; tied: the output layer is the embedding table."""
    table = {"token_embd.weight": ("embed/table", False), "output_norm.weight": ("norm/gamma", False)}
    for i in range(n_layers):
        table |= prefixed(GGUF_LLAMA_LAYER, f"blk.{i}.", f"decoder/layers/{i}/")
    return table if tied else table | {"output.weight": ("out/w", True)}


GGUF_GEMMA3_LAYER = {
    "attn_norm.weight": ("attn_norm/gamma", False), "post_attention_norm.weight": ("post_attn_norm/gamma", False),
    "attn_q.weight": ("attn/w_q", True), "attn_k.weight": ("attn/w_k", True),
    "attn_v.weight": ("attn/w_v", True), "attn_output.weight": ("attn/w_o", True),
    "attn_q_norm.weight": ("attn/q_norm/gamma", False), "attn_k_norm.weight": ("attn/k_norm/gamma", False),
    "ffn_norm.weight": ("ffn_norm/gamma", False), "post_ffw_norm.weight": ("post_ffn_norm/gamma", False),
    "ffn_gate.weight": ("ffn/w_gate", True), "ffn_up.weight": ("ffn/w_up", True),
    "ffn_down.weight": ("ffn/w_down", True),
}


def gguf_gemma3(n_layers):
    """The table of a Gemma 3 GGUF file with n_layers blocks (the output layer is the embedding table)."""
    table = {"token_embd.weight": ("embed/table", False), "output_norm.weight": ("norm/gamma", False)}
    for i in range(n_layers):
        table |= prefixed(GGUF_GEMMA3_LAYER, f"blk.{i}.", f"decoder/layers/{i}/")
    return table


def torch_stack(kind, n_layers, final_norm, theirs="", ours=""):
    """The table of an nn.TransformerEncoder / Decoder (kind "encoder" / "decoder") under ``theirs``."""
    layer = TORCH_ENCODER_LAYER if kind == "encoder" else TORCH_DECODER_LAYER
    table = {}
    for i in range(n_layers):
        table |= prefixed(layer, f"{theirs}{kind}.layers.{i}.", f"{ours}{kind}/layers/{i}/")
    return table | (norm_names(f"{theirs}{kind}.norm", f"{ours}{kind}/norm") if final_norm else {})


def hf_bert(n_layers):
    """The table of a Hugging Face BertModel with n_layers layers."""
    table = dict(HF_BERT_EMBEDDINGS)
    for i in range(n_layers):
        table |= prefixed(HF_BERT_LAYER, f"encoder.layer.{i}.", f"encoder/layers/{i}/")
    return table


def split_in_proj(named):
    """torch's fused ``*in_proj_weight`` (3C, C) / ``*in_proj_bias`` (3C,) -> ``*q_proj_weight`` … ``*v_proj_bias``."""
    out = {}
    for name, a in named.items():
        for fused, part in (("in_proj_weight", "_proj_weight"), ("in_proj_bias", "_proj_bias")):
            if name.endswith(fused):
                head = name[: -len(fused)]
                out |= {f"{head}{x}{part}": piece for x, piece in zip("qkv", np.split(a, 3))}
                break
        else:
            out[name] = a
    return out


def fuse_in_proj(named, wanted):
    """The inverse of split_in_proj, for the names in ``wanted`` (a module's own state-dict names) that are fused."""
    out = dict(named)
    for name in wanted:
        for fused, part in (("in_proj_weight", "_proj_weight"), ("in_proj_bias", "_proj_bias")):
            if name.endswith(fused):
                head = name[: -len(fused)]
                pieces = [out.pop(f"{head}{x}{part}", None) for x in "qkv"]
                if all(p is not None for p in pieces):
                    out[name] = np.concatenate(pieces)
    return out


def import_weights(named, table, template=None, consume=False):
    """Our params tree from ``named`` ({their name: array}), through ``table``.  Names the table lacks are an
    error; entries the table has but ``named`` lacks become layer-norm defaults (gamma 1, beta 0, for norms
    stored without them) or None (absent biases).  ``template`` (a tree) fixes the tree's structure.  consume:
    each entry is removed from ``named`` as it is converted, so a loader's arrays and their transposed copies are
    never all alive at once (a file's float32 matrices: one copy of the model, not two)."""
    unknown = sorted(set(named) - set(table))
    if unknown:
        raise ValueError(f"weights with no place in the params tree: {unknown[:5]}")
    present = set(named)
    take = named.pop if consume else named.__getitem__
    flat = {path: _leaf(take(name), transposed) for name, (path, transposed) in table.items() if name in present}
    for name, (path, _) in table.items():
        if name not in present:
            flat[path] = _default(path, flat)
    return unflatten(flat, template)


def _leaf(w, transposed):
    """An array (transposed into C order if the table says so); a stored weight (core.weights: quantized, GGUF
    blocks) is kept as stored, only marked transposed."""
    if isinstance(w, StoredWeight):
        return w.T if transposed else w
    return np.ascontiguousarray(np.asarray(w).T) if transposed else np.asarray(w)


def _default(path, flat):
    """gamma = 1 and beta = 0 for a norm stored without them; None for an absent bias."""
    leaf = path.rsplit(SEP, 1)[-1]
    if leaf not in ("gamma", "beta"):
        return None
    sibling = flat.get(path[: -len(leaf)] + ("beta" if leaf == "gamma" else "gamma"))
    if sibling is None:
        raise ValueError(f"no weights for the layer norm at {path!r}")
    return np.ones_like(sibling) if leaf == "gamma" else np.zeros_like(sibling)


def export_weights(params, table):
    """{their name: array} from our params tree, through ``table`` (None leaves — absent biases — are left out)."""
    flat = flatten(params)
    return {name: (np.ascontiguousarray(np.asarray(flat[path]).T) if transposed else np.asarray(flat[path]))
            for name, (path, transposed) in table.items() if flat.get(path) is not None}
