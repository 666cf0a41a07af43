"""Speculative decoding is exact: greedy output equals plain greedy decoding token for token, and sampled output
is distributed as plain sampling from the target (chi-square over many seeds)."""

import functools

import numpy as np
import pytest
from helpers import skip_without_smollm2, tiny_llama

from transformer_np import decoding
from transformer_np.decoding.cache import LayerCache
from transformer_np.efficient.draft import HeadConfig, HeadDraft, distill
from transformer_np.efficient.speculative import (
    ModelDraft,
    PromptLookup,
    early_exit,
    expected_speedup,
    speculative_generate,
)
from transformer_np.pretrained.llama import LlamaModel, llama_logits


def tiny_model(seed=0, vocab_size=19, n_layers=3):
    params, cfg = tiny_llama(np.random.default_rng(seed), vocab_size=vocab_size, n_layers=n_layers)
    return LlamaModel(params, cfg, tokenizer=None, name="tiny")


@functools.cache
def tiny_head(seed, vocab_size, n_layers, rows):
    """A draft head distilled for 30 steps from tiny_model(seed, vocab_size, n_layers), reading ``rows`` rows."""
    model = tiny_model(seed, vocab_size, n_layers)
    rng = np.random.default_rng(seed)
    seqs = [list(rng.integers(0, vocab_size, 12)) for _ in range(4)]
    cfg = HeadConfig(d_model=16, n_heads=4, n_kv_heads=2, d_ff=24, rows=rows, rope_base=1000.0)
    return distill(model, seqs, cfg=cfg, steps=30, lr=3e-3, warmup=5)[0]


def make_draft(kind, model, seed=0, n_layers=3):
    """A fresh draft of the given kind for model (tiny_model(seed, V, n_layers))."""
    V = model.config.vocab_size
    if kind == "early-exit":
        return ModelDraft(early_exit(model, 1))
    if kind == "lookup":
        return PromptLookup(V)
    return HeadDraft(tiny_head(seed, V, n_layers, V - 1), model)  # one token never drafted: q = 0 there


@pytest.mark.parametrize("gamma", [1, 3, 5])
@pytest.mark.parametrize("draft_kind", ["early-exit", "lookup", "head"])
def test_greedy_speculative_decoding_equals_plain_greedy(gamma, draft_kind):
    model = tiny_model()
    prompt = [3, 5, 7, 3, 5, 7, 3, 5]  # repetitive: prompt lookup finds n-grams to copy
    plain = decoding.greedy(decoding.LMSession(model, [prompt]), 20)[0]
    draft = make_draft(draft_kind, model)
    out, stats = speculative_generate(model, draft, prompt, 20, gamma=gamma)
    assert out == plain
    assert stats.produced == 20 and 1 <= stats.tokens_per_call <= gamma + 1
    assert stats.target_calls < 20 or stats.accepted == 0  # every accepted draft saves a target pass


def test_a_draft_equal_to_the_target_is_always_accepted():
    model = tiny_model()
    out, stats = speculative_generate(model, ModelDraft(model), [1, 2, 3], 12, gamma=3)
    assert stats.acceptance_rate == 1.0 and stats.tokens_per_call == 4.0 and stats.target_calls == 3


def exact_two_token_distribution(model, prompt, temperature):
    """P(x1, x2) of plain sampling from the target, by enumeration."""
    V = model.config.vocab_size

    def probs(ids):
        logits, _ = llama_logits(model.params, np.array([ids]), model.config)
        return decoding.next_token_probs(logits[:, -1], temperature)[0]

    p1 = probs(prompt)
    return np.stack([p1[a] * probs(prompt + [a]) for a in range(V)])  # (V, V)


@pytest.mark.parametrize("draft_kind", ["early-exit", "lookup", "head"])
def test_sampled_speculative_output_is_distributed_as_the_target(draft_kind):
    from scipy.stats import chisquare

    model = tiny_model(seed=1, vocab_size=5, n_layers=2)
    prompt, tau = [1, 2, 1, 2, 1], 1.5
    want = exact_two_token_distribution(model, prompt, tau).reshape(-1)
    counts = np.zeros(25)
    n = 2000
    for seed in range(n):
        draft = make_draft(draft_kind, model, seed=1, n_layers=2)
        out, _ = speculative_generate(model, draft, prompt, 2, gamma=3, temperature=tau,
                                      rng=np.random.default_rng(seed))
        counts[out[0] * 5 + out[1]] += 1
    keep = want * n >= 5  # chi-square needs expected counts of at least ~5: lump the rare pairs
    observed = np.append(counts[keep], counts[~keep].sum())
    expected = np.append(want[keep], want[~keep].sum()) * n
    assert chisquare(observed, expected).pvalue > 1e-3


def test_cache_truncate_rolls_back_to_a_prefix():
    rng = np.random.default_rng(0)
    cache = LayerCache()
    k, v = rng.standard_normal((1, 2, 5, 4)), rng.standard_normal((1, 2, 5, 4))
    cache.extend(k, v)
    cache.truncate(3)
    assert cache.length == 3 and np.array_equal(cache.k, k[:, :, :3]) and np.array_equal(cache.v, v[:, :, :3])


def test_expected_speedup_formula_limits():
    assert expected_speedup(0.0, 4, 0.1) == pytest.approx(1 / 1.4)
    assert expected_speedup(1.0, 4, 0.0) == 5.0
    assert expected_speedup(0.8, 4, 0.05) == pytest.approx((1 - 0.8**5) / 0.2 / 1.2)


def test_sampling_without_a_generator_is_an_error():
    with pytest.raises(TypeError, match="rng="):
        speculative_generate(tiny_model(), PromptLookup(19), [1, 2], 3, temperature=1.0)


def test_speculative_decoding_of_smollm2_equals_its_plain_greedy_answer():
    from transformer_np.pretrained.llama import load_smollm2

    skip_without_smollm2()
    model = load_smollm2()
    ids = model.chat_ids([{"role": "user", "content": "Repeat after me: the cat sat on the mat, the cat sat."}])
    plain = model.generate(ids, 24, eos_id=None)
    for draft in (ModelDraft(early_exit(model, 8)), PromptLookup(model.config.vocab_size)):
        assert speculative_generate(model, draft, ids, 24, gamma=4)[0] == plain
