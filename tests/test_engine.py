"""The serving engine's techniques change when a request's tokens are computed, never which: prefix caching,
chunked prefill, blocks on demand with preemption and sampling per request each give every request exactly what
decoding it alone gives; a cached block is never altered, and eviction never takes a block a request holds."""

import numpy as np
import pytest
from helpers import tiny_llama
from hypothesis import given, settings
from hypothesis import strategies as st

import transformer_np as tn
from transformer_np import decoding as g
from transformer_np.efficient.paged import BlockPool
from transformer_np.efficient.serve import Server
from transformer_np.pretrained.llama import LlamaModel


def models():
    lm = tn.DecoderLM(tn.TransformerConfig.lm_tiny(max_len=64, dtype="float64"), seed=1)
    params, cfg = tiny_llama(np.random.default_rng(0), vocab_size=19)
    return [lm, LlamaModel(params, cfg, tokenizer=None, name="tiny")]


MODELS = models()
IDS = ["decoder-lm", "llama-gqa"]


def alone(model, prompt, n, seed=None, temperature=None, top_k=None, top_p=None, eos_id=None):
    """What decoding the request by itself gives: greedy, or sampling from its own seeded generator."""
    session = g.LMSession(model, [prompt])
    if temperature is None and top_k is None and top_p is None:
        return g.greedy(session, n, eos_id=eos_id)[0]
    return g.sample(session, n, rng=np.random.default_rng(seed), temperature=temperature or 1.0, top_k=top_k,
                    top_p=top_p, eos_id=eos_id)[0]


def shared_prefix_work(rng, V, n=10):
    """Requests whose prompts start with one of two 'system prompts' (9 and 6 tokens), some sampled."""
    systems = [list(rng.integers(0, V, 9)), list(rng.integers(0, V, 6))]
    work = []
    for i in range(n):
        prompt = [int(t) for t in systems[i % 2] + list(rng.integers(0, V, rng.integers(1, 7)))]
        sampling = {} if i % 3 else dict(temperature=0.8, top_p=0.9, seed=i)
        work.append((prompt, int(rng.integers(2, 10)), sampling))
    return work


def serve(model, work, **options):
    blocks = options.pop("blocks", 64)
    server = Server(model, BlockPool.for_model(model, blocks, block_size=4), **options)
    handles = [server.submit(p, n, **s) for p, n, s in work]
    server.run()
    return server, handles


@pytest.mark.parametrize("model", MODELS, ids=IDS)
def test_prefix_caching_gives_the_uncached_engines_tokens_and_each_requests_own(model):
    work = shared_prefix_work(np.random.default_rng(2), model.config.vocab_size)
    cached, a = serve(model, work, max_batch=3)
    plain, b = serve(model, work, max_batch=3, prefix_cache=False)
    assert [h.output for h in a] == [h.output for h in b] == [alone(model, p, n, **s) for p, n, s in work]
    assert cached.cache_hits > 0 and plain.cache_hits == 0
    assert cached.cache_hits == sum(h.cached_tokens for h in a) <= cached.prompt_tokens


@pytest.mark.parametrize("model", MODELS, ids=IDS)
def test_chunked_prefill_gives_each_request_what_it_gets_alone(model):
    rng = np.random.default_rng(4)
    V = model.config.vocab_size
    work = [([int(t) for t in rng.integers(0, V, rng.integers(1, 30))], int(rng.integers(1, 9)),
             {} if i % 2 else dict(temperature=1.1, top_k=5, seed=i)) for i in range(8)]
    server, handles = serve(model, work, max_batch=3, chunk=7)
    assert [h.output for h in handles] == [alone(model, p, n, **s) for p, n, s in work]
    chunks = [n for step in server.prefill_timeline for _, n in step]
    assert max(chunks) <= 7 and len(chunks) > len(work)  # long prompts took several steps
    assert all(len(ids) <= 3 for ids in server.timeline)


@pytest.mark.parametrize("model", MODELS, ids=IDS)
@pytest.mark.parametrize("chunk", [None, 6])
def test_preempted_requests_resume_with_exactly_the_tokens_they_get_alone(model, chunk):
    rng = np.random.default_rng(6)
    V = model.config.vocab_size
    work = [([int(t) for t in rng.integers(0, V, rng.integers(3, 12))], int(rng.integers(8, 20)),
             {} if i % 2 else dict(temperature=0.9, seed=10 + i)) for i in range(6)]
    server, handles = serve(model, work, max_batch=4, blocks=12, chunk=chunk)  # 48 positions for 4 requests
    assert server.preemptions > 0 and any(h.preemptions for h in handles)
    assert [h.output for h in handles] == [alone(model, p, n, **s) for p, n, s in work]
    assert server.pool.used_blocks == 0


def _block_contents(pool, block):
    return pool.k[:, block].copy(), pool.v[:, block].copy()


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_a_cached_block_is_never_altered_and_eviction_never_takes_a_block_in_use(data):
    model = MODELS[1]
    V = model.config.vocab_size
    system = data.draw(st.lists(st.integers(0, V - 1), min_size=4, max_size=9))
    work = [(system + data.draw(st.lists(st.integers(0, V - 1), min_size=1, max_size=5)), data.draw(st.integers(1, 6)),
             {}) for _ in range(data.draw(st.integers(2, 6)))]
    blocks = data.draw(st.integers(6, 12))
    server = Server(model, BlockPool.for_model(model, blocks, block_size=4), max_batch=data.draw(st.integers(1, 3)),
                    chunk=data.draw(st.sampled_from([None, 5, 9])))
    pool = server.pool
    handles = [server.submit(p, n) for p, n, _ in work]
    seen = {}  # key -> (block, its contents when first seen cached)
    while server.waiting or server.running:
        server.step()
        for key, block in pool.cached.items():
            if key in seen and seen[key][0] == block:
                k, v = seen[key][1]
                assert np.array_equal(pool.k[:, block], k) and np.array_equal(pool.v[:, block], v)
            else:
                seen[key] = (block, _block_contents(pool, block))
        held = {b for r in server.running for b in pool.tables[r.seq]}
        assert not held & set(pool.evictable) and not held & set(pool.free)  # a held block is never up for grabs
        assert all(pool.refs[b] > 0 for b in held)
    assert [h.output for h in handles] == [alone(model, p, n) for p, n, _ in work]


def test_eviction_frees_the_least_recently_used_cached_blocks_first():
    model = MODELS[1]
    server = Server(model, BlockPool.for_model(model, 6, block_size=4), max_batch=1)
    a = server.submit([1, 2, 3, 4, 5, 6, 7, 8, 9], 1)  # two whole blocks cached after it
    server.run()
    b = server.submit([9, 8, 7, 6, 5, 4, 3, 2, 1], 1)  # two more; the pool has 6 blocks
    server.run()
    pool = server.pool
    assert len(pool.cached) == 4 and pool.evictions == 0
    c = server.submit([5] * 13, 1)  # needs 4 blocks: the free ones, then the oldest cached (a's)
    server.run()
    assert pool.evictions == 2 and pool.match(a.prompt) == [] and len(pool.match(b.prompt)) == 2
    assert c.output == alone(model, c.prompt, 1)


def test_bad_sampling_settings_and_stop_strings_without_a_tokenizer_are_refused():
    model = MODELS[0]
    server = Server(model, BlockPool.for_model(model, 8, block_size=4))
    with pytest.raises(ValueError, match="top_p"):
        server.submit([1, 2], 3, top_p=1.5)
    with pytest.raises(ValueError, match="seed must be an integer"):
        server.submit([1, 2], 3, temperature=0.5, seed=-1)
    with pytest.raises(ValueError, match="stop strings need a model with a tokenizer"):
        server.submit([1, 2], 3, stop=["x"])
    with pytest.raises(ValueError, match="chunk=4 must exceed max_batch=8"):
        Server(model, BlockPool.for_model(model, 8, block_size=4), chunk=4)
    assert not server.waiting


def test_a_poisson_workload_arrives_in_order_and_conversations_grow_turn_by_turn():
    from transformer_np.efficient.serve import poisson_workload, simulate, simulate_static

    rng = np.random.default_rng(0)
    work = poisson_workload(rng, 9, rate=100.0, vocab_size=19, prompt_mean=5, output_mean=4, max_prompt=8,
                            max_output=6, system_prompt=8, turns=3)
    firsts = [a for a in work if a.follows is None]
    assert len(firsts) == 3 and all(a.prompt[:8] == firsts[0].prompt[:8] for a in firsts)
    assert [a.time for a in firsts] == sorted(a.time for a in firsts)
    assert [a.follows for a in work] == [None, 0, 1, None, 3, 4, None, 6, 7]
    model = MODELS[1]
    sim = simulate(model, work, max_batch=2, n_blocks=64, block_size=4)
    h = sim["handles"]
    for i, a in enumerate(work):
        if a.follows is not None:  # the whole conversation so far, then the new message
            before = h[a.follows]
            assert h[i].prompt == before.prompt + before.output + a.prompt
            assert h[i].submitted_time >= before.finished_time
        assert h[i].output == alone(model, h[i].prompt, a.max_new_tokens)
        assert h[i].ttft > 0 and h[i].first_token_time <= h[i].finished_time
    assert 0 < sim["prefix_hit_rate"] < 1 and sim["tokens"] == sum(len(x.output) for x in h)
    assert sim["ttft_s"][50] <= sim["ttft_s"][99] and sim["tbt_s"][99] >= 0
    with pytest.raises(ValueError, match="needs continuous batching"):
        simulate_static(model, work)


@settings(max_examples=30, deadline=None)
@given(st.data())
def test_attention_over_the_blocks_in_place_equals_the_gather_path(data):
    """Random block tables (the pool's blocks handed out shuffled), ragged lengths, grouped-query heads, a mask:
    paged_attention, a tile of blocks at a time, equals attention over the gathered copy (float64, 1e-12)."""
    from transformer_np.core.attention import scaled_dot_product_attention
    from transformer_np.efficient.paged import PagedKVCache, paged_attention

    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    H_kv, G, D, bs = data.draw(st.integers(1, 2)), data.draw(st.sampled_from([1, 3])), 4, data.draw(st.integers(1, 4))
    pool = BlockPool(1, 128, H_kv, D, block_size=bs, dtype=np.float64)  # room for 3 × 40 positions
    rng.shuffle(pool.free)
    B = data.draw(st.integers(1, 3))
    seqs = [pool.new_sequence() for _ in range(B)]
    lengths = [data.draw(st.integers(1, 40)) for _ in range(B)]
    for s, n in zip(seqs, lengths):
        k, v = rng.standard_normal((2, 1, H_kv, n, D))
        PagedKVCache(pool, [s])[0].extend(k, v)
    T, S = data.draw(st.integers(1, 3)), max(lengths)
    q = rng.standard_normal((B, H_kv * G, T, D))
    mask = rng.random((B, 1, T, S)) < 0.8 if data.draw(st.booleans()) else None
    k, v = pool.gather(0, seqs, lengths)
    own = (np.arange(S)[None, :] < np.array(lengths)[:, None])[:, None, None, :]
    want = scaled_dot_product_attention(q, k, v, mask=own if mask is None else own & mask)[0]
    got = paged_attention(q, pool, 0, seqs, lengths, mask, tile_blocks=data.draw(st.integers(1, 5)))
    np.testing.assert_allclose(got, want, atol=1e-12, rtol=0)


@pytest.mark.parametrize("in_place", [True, False])
def test_the_llama_server_attends_in_place_or_by_gathering_with_the_same_tokens(in_place):
    model = MODELS[1]
    work = shared_prefix_work(np.random.default_rng(8), model.config.vocab_size, n=6)
    _, handles = serve(model, work, max_batch=3, chunk=8, in_place=in_place)
    assert [h.output for h in handles] == [alone(model, p, n, **s) for p, n, s in work]
