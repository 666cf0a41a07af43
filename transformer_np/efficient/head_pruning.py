r"""Which of MiniLM's heads matter (Michel et al. 2019, "Are sixteen heads really better than one?"): each head's
importance I_{l,h} = E |∂L/∂ξ_{l,h}| from the gradient of a gate ξ on its output, the heads pruned in that order,
and what pruning costs in paraphrase retrieval.  The study of :mod:`.prune`'s head masks on a real model.
"""

from __future__ import annotations

import numpy as np

from .prune import head_gate_importance, prune_heads


def w_o_paths(cfg):
    """The params paths of every layer's attention output projection W_O."""
    return [f"encoder/layers/{i}/self_attn/w_o" for i in range(cfg.n_encoder_layers)]


def head_importance(model, pairs, batch_size=8):
    r"""Michel et al.'s I_{l,h} = E |∂L/∂ξ_{l,h}| for every head of ``model``: L the ranking loss of
    :func:`~transformer_np.pretrained.minilm.ranking_loss` on batches of ``batch_size`` (sentence, paraphrase)
    pairs (the other pairs of a batch are its negatives, so the expectation is over batches, not single pairs).
    Returns (L, H)."""
    chunks = [pairs[i:i + batch_size] for i in range(0, len(pairs), batch_size)]
    grads = (model.contrastive_loss([a for a, _ in c], [b for _, b in c])[1] for c in chunks)
    return head_gate_importance(model.params, grads, w_o_paths(model.config), model.config.n_heads)


def pair_retrieval(model, pairs):
    """How well the sentences find their paraphrases among all the pairs' paraphrases: the fraction whose own
    paraphrase is the nearest (cosine), and the mean margin cos(s_i, p_i) − max_{j≠i} cos(s_i, p_j)."""
    sims = model.encode([s for s, _ in pairs]) @ model.encode([t for _, t in pairs]).T  # (N, N)
    own = np.diag(sims).copy()
    np.fill_diagonal(sims, -np.inf)
    return {"accuracy": float(np.mean(own > sims.max(axis=1))), "margin": float(np.mean(own - sims.max(axis=1)))}


def heads_pruned(model, heads):
    """A copy of a MiniLM with every (layer, head) in ``heads`` removed (its rows of W_O zeroed)."""
    cfg = model.config
    return model.with_params(prune_heads(model.params, w_o_paths(cfg), heads, cfg.d_head))
