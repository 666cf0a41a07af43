# %% [markdown]
# # Solutions: 6. Decoding: greedy, sampling, beam search — and the KV cache
#
# Reference solutions to the exercises of [06_decoding_and_kv_cache](../06_decoding_and_kv_cache.ipynb). Try them there first; each solution here is run through the same checker (and this notebook runs in CI).

# %%
import math

import numpy as np

import transformer_np as tn
from transformer_np.teaching import exercises


# %% [markdown]
# **1.** Write `my_top_k(probs, k)`: keep each row's k largest probabilities, zero the rest, renormalise.

# %%
# Reference solution
def my_top_k(probs, k):
    kth = np.sort(probs, axis=-1)[:, -k][:, None]        # the k-th largest of each row
    kept = np.where(probs >= kth, probs, 0.0)
    return kept / kept.sum(-1, keepdims=True)


exercises.check_top_k(my_top_k)


# %% [markdown]
# **2.** Write `my_cache_bytes(cfg, batch, tokens, itemsize)` for a decoder-only model — with `cfg.n_kv_heads`
# key/value heads where it is set (grouped-query attention, chapter 9), `cfg.n_heads` where it is None — and use
# it: how many MiB does GPT-2 small (12 layers, C = 768) need for one 1024-token sequence in float32?

# %%
# Reference solution: K and V, per layer, each (B, H, t, D)
def my_cache_bytes(cfg, batch, tokens, itemsize):
    kv_heads = cfg.n_kv_heads or cfg.n_heads  # grouped-query attention keeps H_kv heads of K and V
    return 2 * cfg.n_decoder_layers * batch * kv_heads * tokens * cfg.d_head * itemsize


exercises.check_kv_cache_bytes(my_cache_bytes)
gpt2 = tn.TransformerConfig(d_model=768, n_heads=12, n_encoder_layers=0, n_decoder_layers=12,
                            architecture="decoder-only")
print(f"GPT-2 small, 1024 tokens: {my_cache_bytes(gpt2, 1, 1024, 4) / 2**20:.0f} MiB")

# %% [markdown]
# **3.** One step of beam search. The K beams have scores `scores` (K,) (a dead beam has −∞) and the model's
# next-token log-probabilities `log_probs` (K, V). Write `my_beam_step(scores, log_probs, K)` returning
# `(parents, tokens, new_scores)`, each (K,): the K best extensions of all beams together, best first.

# %%
def my_beam_step(scores, log_probs, K):
    cand = scores[:, None] + log_probs           # (K, V): every beam extended by every token
    best = np.argsort(-cand, axis=None)[:K]      # the K best of all K·V, flattened, best first
    parents, tokens = np.divmod(best, cand.shape[1])
    return parents, tokens, cand[parents, tokens]


exercises.check_beam_step(my_beam_step)

# %% [markdown]
# **4.** One decoding step with a KV cache, for one sequence of H heads. Write
# `my_cache_step(K, V, q, k, v)`: K and V are the cached keys and values (H, t, D); q, k, v the new token's
# (H, 1, D). Append k and v, attend q over all t + 1 keys, and return `(out, K_new, V_new)`. The checker runs it
# from an empty cache and compares every output with full causal attention.

# %%
def my_cache_step(K, V, q, k, v):
    K, V = np.concatenate([K, k], axis=1), np.concatenate([V, v], axis=1)   # (H, t+1, D)
    scores = q @ K.transpose(0, 2, 1) / np.sqrt(q.shape[-1])                # (H, 1, t+1): no mask needed,
    w = np.exp(scores - scores.max(-1, keepdims=True))                      # the cache holds only the past
    return (w / w.sum(-1, keepdims=True)) @ V, K, V


exercises.check_kv_cache_step(my_cache_step)

