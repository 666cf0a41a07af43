"""Shared test helpers: tolerances from the dtype, comparisons, random arrays.  (Imported as ``helpers``;
tests/conftest.py holds the fixtures and the hypothesis settings.)"""

import numpy as np
import pytest

EQUATION_ATOL = 1e-12  # loop-level version vs vectorised, float64
TORCH_F64_ATOL = 1e-10  # torch oracle, float64
TORCH_F32 = dict(rtol=1e-5, atol=1e-6)  # torch oracle, float32


def assert_close(actual, expected, *, atol, rtol=0.0):
    """Shape first, then values; actual may come from any backend that to_numpy knows."""
    from transformer_np import to_numpy

    actual, expected = to_numpy(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape}"
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


def numeric_grad(f, x, eps=1e-6, at=None):
    """Central differences of the scalar f() with respect to every entry of x (changed in place, restored), or only
    at the index tuples ``at`` (the other entries of the result stay 0)."""
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape) if at is None else at:
        old = x[i]
        x[i] = old + eps
        up = f()
        x[i] = old - eps
        down = f()
        x[i] = old
        g[i] = (up - down) / (2 * eps)
    return g


def randn(rng, *shape, dtype=np.float64):
    return rng.standard_normal(shape).astype(dtype)


def tiny_llama(rng, layout="pairs", vocab_size=19, n_layers=2):
    """Random weights of a small Llama-architecture model (C=16, 4 query heads over 2 K/V heads), float64."""
    from transformer_np.pretrained.llama import LlamaConfig

    cfg = LlamaConfig(d_model=16, n_heads=4, n_kv_heads=2, n_layers=n_layers, d_ff=24, vocab_size=vocab_size,
                      max_len=64, rope_base=1000.0, rope_layout=layout)
    D, Hkv = cfg.d_head, cfg.n_kv_heads

    def layer():
        return {"attn_norm": {"gamma": 1 + 0.1 * randn(rng, 16)}, "ffn_norm": {"gamma": 1 + 0.1 * randn(rng, 16)},
                "attn": {"w_q": 0.3 * randn(rng, 16, 16), "w_k": 0.3 * randn(rng, 16, Hkv * D),
                         "w_v": 0.3 * randn(rng, 16, Hkv * D), "w_o": 0.3 * randn(rng, 16, 16)},
                "ffn": {"w_gate": 0.3 * randn(rng, 16, 24), "w_up": 0.3 * randn(rng, 16, 24),
                        "w_down": 0.3 * randn(rng, 24, 16)}}

    params = {"embed": {"table": randn(rng, vocab_size, 16)}, "decoder": {"layers": [layer() for _ in range(n_layers)]},
              "norm": {"gamma": np.ones(16)}}
    return params, cfg


def skip_without_smollm2():
    """Skip the calling test or fixture, with the install command, where the SmolLM2 weights are not installed."""
    from transformer_np.pretrained.llama import INSTALL, smollm2_path

    try:
        smollm2_path()
    except ImportError:
        pytest.skip(f"the SmolLM2 weights are not installed: {INSTALL}")
