"""The paged KV cache equals the contiguous one (tokens and logits bit for bit), shares blocks safely, returns
them all; continuous batching gives every request exactly what it gets alone."""

import re

import numpy as np
import pytest
from helpers import tiny_llama
from hypothesis import given
from hypothesis import strategies as st

import transformer_np as tn
from transformer_np import decoding as g
from transformer_np.efficient.paged import BlockPool, PagedKVCache, paged_cache
from transformer_np.efficient.serve import Server
from transformer_np.pretrained.llama import LlamaModel


def models():
    lm = tn.DecoderLM(tn.TransformerConfig.lm_tiny(max_len=64), seed=1)
    params, cfg = tiny_llama(np.random.default_rng(0), vocab_size=19)
    return [lm, LlamaModel(params, cfg, tokenizer=None, name="tiny")]


@pytest.mark.parametrize("model", models(), ids=["decoder-lm", "llama-gqa"])
def test_paged_cache_gives_the_contiguous_caches_logits_bit_for_bit(model):
    pool = BlockPool.for_model(model, 64, block_size=4)
    prompts = [[1, 2, 3, 4, 5], [6, 7]]  # ragged: left-padded by the session
    plain, paged = g.LMSession(model, prompts), g.LMSession(model, prompts, make_cache=paged_cache(pool))
    for step in range(9):
        assert np.array_equal(plain.next_logits, paged.next_logits), step
        tokens = np.argmax(plain.next_logits, axis=-1)
        plain.append(tokens)
        paged.append(tokens)
    assert paged.cache_bytes() == pool.used_blocks * pool.block_bytes()


@pytest.mark.parametrize("model", models(), ids=["decoder-lm", "llama-gqa"])
def test_beam_search_and_sampling_on_the_paged_cache_equal_the_contiguous_cache(model):
    pool = BlockPool.for_model(model, 64, block_size=4)
    assert g.beam_search(g.LMSession(model, [[1, 2, 3]]), 3, 10) == \
        g.beam_search(g.LMSession(model, [[1, 2, 3]], make_cache=paged_cache(pool)), 3, 10)
    kw = dict(rng=None, temperature=0.9, top_p=0.95)
    a = g.sample(g.LMSession(model, [[4, 5], [6]]), 8, **{**kw, "rng": np.random.default_rng(3)})
    b = g.sample(g.LMSession(model, [[4, 5], [6]], make_cache=paged_cache(pool)), 8,
                 **{**kw, "rng": np.random.default_rng(3)})
    assert a == b


@given(st.data())
def test_copy_on_write_never_alters_a_shared_block(data):
    pool = BlockPool(1, 32, 1, 2, block_size=4, dtype=np.float64)
    parent = pool.new_sequence()
    cache = PagedKVCache(pool, [parent])
    n = data.draw(st.integers(1, 10))
    x = np.arange(n * 2, dtype=np.float64).reshape(1, 1, n, 2)
    cache[0].extend(x, x)
    before = pool.gather(0, [parent], [n])[0].copy()
    children = [pool.new_sequence(parent, data.draw(st.integers(0, n))) for _ in range(data.draw(st.integers(1, 3)))]
    for child in children:
        extra = data.draw(st.integers(1, 6))
        y = np.full((1, 1, extra, 2), -1.0)
        PagedKVCache(pool, [child])[0].extend(y, y)
    assert np.array_equal(pool.gather(0, [parent], [n])[0], before)  # the parent's tokens are untouched
    for seq in [parent, *children]:
        pool.release(seq)
    assert pool.used_blocks == 0 and sorted(pool.free) == list(range(32))  # every block came back


def test_a_full_pool_is_a_clear_error():
    pool = BlockPool(1, 2, 1, 2, block_size=2)
    cache = PagedKVCache(pool, [pool.new_sequence()])
    with pytest.raises(MemoryError, match="pool is full"):
        cache[0].extend(np.zeros((1, 1, 5, 2), np.float32), np.zeros((1, 1, 5, 2), np.float32))


@pytest.mark.parametrize("model", models(), ids=["decoder-lm", "llama-gqa"])
def test_continuous_batching_gives_every_request_what_it_gets_alone(model):
    rng = np.random.default_rng(5)
    V = model.config.vocab_size
    work = [([int(t) for t in rng.integers(0, V, rng.integers(1, 9))], int(rng.integers(1, 12))) for _ in range(10)]
    pool = BlockPool.for_model(model, 40, block_size=4)
    server = Server(model, pool, max_batch=3)
    handles = [server.submit(p, n) for p, n in work]
    finished = []
    server.run(progress=finished.append)  # a progress bar's update: requests finished at each step
    assert sum(finished) == len(work) and all(k > 0 for k in finished)
    for (prompt, n), h in zip(work, handles):
        assert h.output == g.greedy(g.LMSession(model, [prompt]), n)[0]
    assert pool.used_blocks == 0  # every finished request gave its blocks back
    assert max(o[0] for o in server.occupancy) <= 3
    assert server.steps < sum(n for _, n in work)  # requests ran side by side


def test_requests_stop_at_their_eos():
    model = models()[0]
    alone = g.greedy(g.LMSession(model, [[1, 2]]), 10)[0]
    eos = alone[3]
    server = Server(model, BlockPool.for_model(model, 16, block_size=4), max_batch=2)
    h = server.submit([1, 2], 10, eos_id=eos)
    server.run()
    assert h.output == alone[: alone.index(eos) + 1]


def test_serve_sim_command_prints_throughput_latency_and_occupancy(capsys):
    from transformer_np.cli.main import main

    assert main(["serve-sim", "--requests", "6", "--max-batch", "3", "--rate", "200", "--system-prompt", "20",
                 "--turns", "2", "--chunk", "16"]) == 0
    out = capsys.readouterr().out
    assert "tokens/s" in out and "time to first token" in out and "between tokens" in out and "KV cache: peak" in out
    hit = float(re.search(r"prefix cache hit rate (\d+)%", out).group(1))
    assert hit > 0  # the system prompt and the first turn of each conversation are reused
    assert main(["serve-sim", "--requests", "4", "--static", "--turns", "2"]) == 2
    assert "--static and --turns exclude each other" in capsys.readouterr().err


@pytest.mark.parametrize("model", models(), ids=["decoder-lm", "llama-gqa"])
def test_requests_with_a_common_prompt_prefix_reuse_its_cached_blocks_and_get_what_they_get_alone(model):
    system = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]  # a shared "system prompt" of 10 tokens: two whole blocks of 4
    work = [(system + [11 % model.config.vocab_size, 3], 6), (system + [4, 4, 4], 5), (system + [9], 7)]
    pool = BlockPool.for_model(model, 40, block_size=4)
    server = Server(model, pool, max_batch=3)
    first = server.submit(*work[0])
    server.step()  # its prompt's blocks are computed, and cached
    handles = [first] + [server.submit(p, n) for p, n in work[1:]]
    server.run()
    assert [h.cached_tokens for h in handles] == [0, 8, 8]  # the later two reuse the first one's two blocks
    for (prompt, n), h in zip(work, handles):
        assert h.output == g.greedy(g.LMSession(model, [prompt]), n)[0]
    assert pool.used_blocks == 0  # nothing held; the blocks stay cached for later requests
    again = server.submit(system + [5], 4)  # after every request finished: the cache still holds the prefix
    server.run()
    assert again.cached_tokens == 8 and again.output == g.greedy(g.LMSession(model, [system + [5]]), 4)[0]
    assert server.cache_hits == 24 and server.prompt_tokens == sum(len(p) for p, _ in work) + 11


def test_a_request_the_whole_pool_cannot_hold_is_refused_at_submit_and_the_rest_are_served():
    model = models()[0]
    server = Server(model, BlockPool.for_model(model, 4, block_size=4), max_batch=2)  # 16 positions in all
    first = server.submit([1, 2], 5)
    with pytest.raises(ValueError, match="need 5 blocks of 4 positions, more than the whole pool's 4"):
        server.submit([1, 2, 3], 15)
    last = server.submit([3, 4], 5)
    server.run()
    assert first.done and last.done and len(last.output) == 5


@pytest.mark.parametrize("prompt, eos_id, message", [([1.9, 2.7], None, "prompt token must be an integer"),
                                                     ([True, False], None, "prompt token must be an integer"),
                                                     (["3", "4"], None, "prompt token must be an integer"),
                                                     ([1, 2], -1, "eos_id must be an integer in"),
                                                     ([1, 2], 2.5, "eos_id must be an integer in"),
                                                     ([1, 2], 10**9, "eos_id must be an integer in")])
def test_submit_refuses_ids_it_would_have_to_coerce(prompt, eos_id, message):
    model = models()[0]
    server = Server(model, BlockPool.for_model(model, 8, block_size=4))
    with pytest.raises(ValueError, match=message):
        server.submit(prompt, 3, eos_id=eos_id)
    assert not server.waiting


class _FailsOnce:
    """A model whose ``fail_at``-th step raises after the real step ran (its K/V already in the cache)."""

    def __init__(self, model, fail_at):
        self.model, self.config, self.calls, self.fail_at = model, model.config, 0, fail_at

    def step(self, ids, **kw):
        self.calls += 1
        out = self.model.step(ids, **kw)
        if self.calls == self.fail_at:
            raise RuntimeError("injected failure")
        return out


def _workload(model, n=5):
    rng = np.random.default_rng(3)
    V = model.config.vocab_size
    return [([int(t) for t in rng.integers(0, V, rng.integers(2, 9))], int(rng.integers(2, 8))) for _ in range(n)]


@pytest.mark.parametrize("fail_at", range(1, 13))
def test_a_step_that_raises_leaves_the_server_as_before_it_and_resuming_gives_the_same_tokens(fail_at):
    """#34 finding 14: a failed prefill lost its request and leaked its blocks; a failure after the last layer's
    K/V write committed the cache without a token, and the row diverged on resume."""
    model = models()[1]
    work = _workload(model)
    alone = [g.greedy(g.LMSession(model, [p]), n)[0] for p, n in work]
    pool = BlockPool.for_model(model, 24, block_size=4)
    faulty = _FailsOnce(model, fail_at)
    server = Server(faulty, pool, max_batch=2)
    handles = [server.submit(p, n) for p, n in work]
    try:
        server.run()
    except RuntimeError as e:
        assert "injected" in str(e)
        assert sum(len(pool.tables[r.seq]) for r in server.running) == pool.used_blocks  # no block leaked
        assert all(r.seq is None for r in server.waiting)  # a failed prefill left its request waiting, first
        assert all(pool.lengths[r.seq] == len(r.prompt) + len(r.output) - 1 for r in server.running)
    server.run()  # the fault is spent: resume
    assert [h.output for h in handles] == alone
    assert pool.used_blocks == 0


def test_cancel_frees_a_requests_blocks_and_leaves_the_others_tokens_unchanged():
    model = models()[1]
    work = [(p, 6) for p, _ in _workload(model, 4)]  # six tokens each: still running after one step
    alone = [g.greedy(g.LMSession(model, [p]), n)[0] for p, n in work]
    pool = BlockPool.for_model(model, 24, block_size=4)
    server = Server(model, pool, max_batch=2)
    handles = [server.submit(p, n) for p, n in work]
    server.step()  # the first two are running, the others waiting
    running, waiting = handles[0], handles[3]
    assert server.cancel(running) and server.cancel(waiting) and not server.cancel(waiting)
    assert running.cancelled and running.done and running.output == alone[0][: len(running.output)]
    assert waiting.cancelled and waiting.output == []
    server.run()
    assert [h.output for h in handles[1:3]] == alone[1:3] and pool.used_blocks == 0
