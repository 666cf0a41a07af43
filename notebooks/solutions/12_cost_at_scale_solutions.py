# %% [markdown]
# # Solutions: 12. The cost of inference at scale
#
# Reference solutions to the exercises of [12_cost_at_scale](../12_cost_at_scale.ipynb). Try them there first; each solution here is run through the same checker (and this notebook runs in CI).

# %%
from transformer_np.teaching import exercises


# %% [markdown]
# **1.** Write `my_decode_time(n_params, bytes_per_weight, batch, peak_flops, bandwidth)`: the roofline time of
# one decode step counting the weights only.

# %%
def my_decode_time(n_params, bytes_per_weight, batch, peak_flops, bandwidth):
    compute = 2 * n_params * batch / peak_flops      # one multiply-add per weight per sequence
    memory = n_params * bytes_per_weight / bandwidth  # every weight read once, whatever the batch
    return max(compute, memory)


exercises.check_decode_time(my_decode_time)


# %% [markdown]
# **2.** Write `my_all_reduce_bytes(nbytes, n)`: how many bytes each of n chips sends in a ring all-reduce of an
# array of `nbytes` (a reduce-scatter, then an all-gather). The checker counts them on a simulated mesh.

# %%
def my_all_reduce_bytes(nbytes, n):
    # reduce-scatter: n - 1 steps, each passing one n-th of the array on; the all-gather does it again
    return 2 * (n - 1) / n * nbytes


exercises.check_ring_all_reduce_bytes(my_all_reduce_bytes)
