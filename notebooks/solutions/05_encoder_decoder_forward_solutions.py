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
# It is checked on random configurations too. Then evaluate it
# on the paper's base model.

# %%
# Reference solution
def my_param_count(cfg):
    C, F, V = cfg.d_model, cfg.d_ff, cfg.vocab_size
    attn, norm, ffn = 4 * C * C + 4 * C, 2 * C, C * F + F + F * C + C
    final = norm if cfg.final_norm else 0  # nn.Transformer's LayerNorm after each stack
    enc = cfg.n_encoder_layers * (attn + 2 * norm + ffn) + final
    dec = cfg.n_decoder_layers * (2 * attn + 3 * norm + ffn) + final
    return V * C + enc + dec + C * V + V


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
