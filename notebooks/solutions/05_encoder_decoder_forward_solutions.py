# %% [markdown]
# # Solutions: 5. The whole encoder-decoder forward pass
#
# Reference solutions to the exercises of [05_encoder_decoder_forward](../05_encoder_decoder_forward.ipynb). Try them there first; each solution here is run through the same checker (and this notebook runs in CI).

# %%
import math

import numpy as np

import transformer_np as tn
from transformer_np.teaching import exercises


# %% [markdown]
# **1.** Write `my_param_count(cfg)`: the number of parameters of a `TransformerConfig` model (embedding table
# V×C; per encoder layer one attention block, two layer norms, an FFN; per decoder layer two attention blocks,
# three layer norms, an FFN; a final norm after each stack when cfg.final_norm; the output layer C×V plus bias).
# It is checked on random configurations too, with every option a `TransformerConfig` has: grouped-query heads
# (`cfg.n_kv_heads` key/value heads, None for H: K and V are C × H_kv·D), tied embeddings (no output layer: the
# logits reuse the table) and `architecture="decoder-only"` (no encoder, no cross-attention, two norms a layer).
# Then evaluate it on the paper's base model.

# %%
# Reference solution
def my_param_count(cfg):
    C, F, V = cfg.d_model, cfg.d_ff, cfg.vocab_size
    kv = (cfg.n_kv_heads or cfg.n_heads) * cfg.d_head  # the width of K and V: grouped-query heads share them
    attn = 2 * (C * C + C) + 2 * (C * kv + kv)           # W_Q, W_O (C x C) and W_K, W_V (C x kv), with biases
    norm, ffn = 2 * C, C * F + F + F * C + C
    final = norm if cfg.final_norm else 0  # nn.Transformer's LayerNorm after each stack
    enc = cfg.n_encoder_layers * (attn + 2 * norm + ffn) + final if cfg.n_encoder_layers else 0
    cross = cfg.architecture == "encoder-decoder"  # a decoder-only layer has no cross-attention and two norms
    dec = cfg.n_decoder_layers * ((2 if cross else 1) * attn + (3 if cross else 2) * norm + ffn) + final
    out = 0 if cfg.tie_embeddings else C * V + V   # tied: the logits reuse the embedding table
    return V * C + enc + dec + out


base = tn.TransformerConfig.paper_base()
exercises.check_parameter_count(my_param_count, base)
exercises.check_parameter_count(my_param_count, tn.TransformerConfig.tiny())

# %% [markdown]
# **2.** In a target of length T, change the token at position t. Write `my_changed(T, t)`: the list of
# positions whose logits change. (The checker runs a random model to find out.)

# %%
def my_changed(T, t):
    # the causal mask lets query u see targets 0..u, so position t itself and every later one see the change
    return list(range(t, T))


exercises.check_causal_dependence(my_changed)
