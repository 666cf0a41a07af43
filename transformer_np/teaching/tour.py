"""``python -m transformer_np tour``: the source document's model end to end, every formula checked.

Builds the model at a small size in float64, runs one example, and checks each formula's vectorised
function against its loop-level version (``reference``) on the real intermediate tensors of that run.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..core import reference as ref
from ..core.attention import multi_head_attention, project_kv, scaled_dot_product_attention, split_heads
from ..core.embeddings import sinusoidal_positional_encoding, token_embedding
from ..core.masks import causal_mask
from ..core.nn import feed_forward, layer_norm, linear, softmax
from ..model.layers import decoder_layer, encoder_layer
from ..model.models import Transformer
from ..training.loop import predict
from ..training.shipped import load_trained

TOLERANCE = 1e-12  # float64 throughout: vectorised and loop-level sums differ only in rounding order


@dataclasses.dataclass
class Tour:
    """What the tour found: the model and its input, one row per formula checked (formula, function, shape,
    max abs error, ok), the untrained model's next-token argmax, and the shipped dates model's answers."""

    model: str
    inputs: str
    rows: list
    argmax: list
    dates_accuracy: float | None = None
    dates: list = dataclasses.field(default_factory=list)  # (text, prediction)

    @property
    def ok(self):
        return all(row[4] for row in self.rows)


def run_tour(seed=0):
    """Run the tour: build the model, run it, check every formula.  Returns a :class:`Tour`."""
    model = Transformer(d_model=32, nhead=4, num_layers=2, num_classes=20, d_ff=64, max_len=64,
                        dtype="float64", seed=seed)
    cfg, p = model.config, model.params
    rng = np.random.default_rng(seed)
    src, tgt = rng.integers(1, 20, size=(1, 7)), rng.integers(1, 20, size=(1, 5))
    inputs = f"src {src.tolist()}  tgt {tgt.tolist()}  (B=1, S=7, T=5, C=32, H=4, D=8, F=64, V=20)"
    rows = []

    def check(formula, function, got, want):
        err = float(np.max(np.abs(np.asarray(got) - np.asarray(want))))
        rows.append((formula, function, str(tuple(np.shape(got))), err, err <= TOLERANCE))

    # embedding and positions
    emb = token_embedding(src, p["embed"]["table"])  # (1, S, C)
    check("E[ids]·√C", "token_embedding", emb, ref.loop_token_embedding(src[0], p["embed"]["table"])[None])
    pe = sinusoidal_positional_encoding(7, 32, dtype=np.float64)  # (S, C)
    check("PE(pos,2i)=sin, PE(pos,2i+1)=cos", "sinusoidal_positional_encoding", pe,
          ref.loop_positional_encoding(7, 32))
    x = emb + pe  # (1, S, C)

    # encoder layer 0, piece by piece
    lp = p["encoder"]["layers"][0]
    a = lp["self_attn"]
    q = split_heads(linear(x, a["w_q"], a["b_q"]), cfg.n_heads)  # (1, H, S, D)
    k, v = project_kv(x, x, a["w_k"], a["b_k"], a["w_v"], a["b_v"], n_heads=cfg.n_heads)
    out, w = scaled_dot_product_attention(q[:, 0], k[:, 0], v[:, 0])  # head 0: (1, S, D), (1, S, S)
    check("softmax(QKᵀ/√d_k)V  (head 0)", "scaled_dot_product_attention", out,
          ref.loop_attention(q[0, 0], k[0, 0], v[0, 0])[0][None])
    check("softmax rows", "softmax", softmax(q[0, 0] @ k[0, 0].T / np.sqrt(8.0)),
          np.stack([ref.loop_softmax(r) for r in q[0, 0] @ k[0, 0].T / np.sqrt(8.0)]))
    mha, _ = multi_head_attention(x, x, x, **a, n_heads=cfg.n_heads)  # (1, S, C)
    check("Concat(head_1..head_h)Wᴼ", "multi_head_attention", mha,
          ref.loop_multi_head_attention(x[0], x[0], a, cfg.n_heads)[0][None])
    h = layer_norm(x + mha, **lp["norm1"], eps=cfg.layer_norm_eps)
    check("LN(x + Sublayer(x))", "residual, layer_norm", h,
          ref.loop_layer_norm((x + mha)[0], lp["norm1"]["gamma"], lp["norm1"]["beta"], cfg.layer_norm_eps)[None])
    check("max(0, xW₁+b₁)W₂+b₂", "feed_forward", feed_forward(h, **lp["ffn"]),
          ref.loop_feed_forward(h[0], **lp["ffn"])[None])
    enc, _ = encoder_layer(x, lp, cfg)
    check("encoder layer", "encoder_layer", enc, ref.loop_encoder_layer(x[0], lp, cfg)[None])

    # the whole model: vectorised forward vs loop-level layers composed by hand
    memory = x[0]
    for layer in p["encoder"]["layers"]:
        memory = ref.loop_encoder_layer(memory, layer, cfg)
    memory = ref.loop_layer_norm(memory, **p["encoder"]["norm"], eps=cfg.layer_norm_eps)
    y = token_embedding(tgt, p["embed"]["table"]) + sinusoidal_positional_encoding(5, 32, dtype=np.float64)
    dp = p["decoder"]["layers"][0]
    hd = y  # post-LN (the paper): the self-attention sublayer sees y itself
    masked, _ = multi_head_attention(hd, hd, hd, **dp["self_attn"], n_heads=cfg.n_heads, mask=causal_mask(5))
    check("masked self-attention (causal)", "multi_head_attention + causal_mask", masked,
          ref.loop_multi_head_attention(hd[0], hd[0], dp["self_attn"], cfg.n_heads, causal_mask(5))[0][None])
    dec, (_, cross_w) = decoder_layer(y, memory[None], dp, cfg, self_mask=causal_mask(5))
    check("decoder layer (self, cross, FFN)", "decoder_layer", dec,
          ref.loop_decoder_layer(y[0], memory, dp, cfg, causal_mask(5))[None])
    out = y[0]
    for layer in p["decoder"]["layers"]:
        out = ref.loop_decoder_layer(out, memory, layer, cfg, causal_mask(5))
    out = ref.loop_layer_norm(out, **p["decoder"]["norm"], eps=cfg.layer_norm_eps)
    logits_loop = ref.loop_linear(out, p["out"]["w"], p["out"]["b"])
    logits = model(src, tgt)  # (1, T, V)
    check("whole model: Linear(Decoder(tgt, Encoder(src)))", "Transformer.__call__", logits, logits_loop[None])
    probs = model.predict_proba(src, tgt)
    check("softmax over the vocabulary", "Transformer.predict_proba", probs,
          np.stack([ref.loop_softmax(r) for r in logits_loop])[None])

    tour = Tour(repr(model), inputs, rows, np.argmax(logits[0], -1).tolist())
    try:
        task, params, _, metrics = load_trained("dates")
    except FileNotFoundError:
        return tour
    examples = ["the 3rd of March, 2021", "3 Mar 21", "Wednesday, 3 March 2021", "Dec 25, 1999"]
    tour.dates_accuracy = metrics["accuracy"]
    tour.dates = list(zip(examples, predict(task, params, examples)))
    return tour
