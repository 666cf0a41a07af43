# %% [markdown]
# # 10. Serving: attention and decoding at scale
#
# Chapter 6 decoded one batch with a KV cache. A server does more: it attends over long contexts without
# holding T × T scores, keeps the caches of many requests of different lengths without wasting memory, refills
# its batch as requests finish, and lets a cheap draft propose tokens that the big model checks in one pass.
# These are the ideas behind FlashAttention, vLLM, Orca and speculative sampling. Each is a page of NumPy in
# `transformer_np.efficient`, and each is tested **equal** to the plain path: same numbers, same tokens.

# %%
import json
import time
import tracemalloc
from pathlib import Path

import numpy as np

import transformer_np as tn
from transformer_np import decoding as g
from transformer_np import viz
from transformer_np.efficient.blockwise import blockwise_attention
from transformer_np.efficient.paged import BlockPool, paged_cache
from transformer_np.efficient.serve import Server
from transformer_np.efficient.speculative import PromptLookup, expected_speedup, speculative_generate
from transformer_np.pretrained import load_smollm2

rng = np.random.default_rng(0)

# %% [markdown]
# ## Blockwise attention: the online softmax
#
# Softmax needs the maximum and the sum of a whole row of scores — seemingly the whole row at once. The online
# softmax visits the keys a tile at a time and keeps, per query, a running maximum $m$, a running normaliser
# $\ell$ and an unnormalised output $O$. When a tile raises the maximum, what came before is rescaled:
#
# $$m' = \max(m, \max_s S_s), \quad \ell' = e^{m - m'}\ell + \sum_s e^{S_s - m'}, \quad
#   O' = e^{m - m'} O + \sum_s e^{S_s - m'} v_s, \qquad \text{out} = O / \ell .$$

# %%
scores = rng.standard_normal(64) * 2 + np.linspace(0, 3, 64)
viz.online_softmax(scores, block=16);

# %%
q, k, v = rng.standard_normal((3, 2, 4, 300, 64))  # (B, H, T, D), T = 300: tiles of 128 do not divide it
mask = tn.causal_mask(300)
plain, _ = tn.scaled_dot_product_attention(q, k, v, mask=mask)
tiled = blockwise_attention(q, k, v, mask, block_q=128, block_k=128)
print("max |blockwise - plain| =", float(np.abs(tiled - plain).max()))
assert np.abs(tiled - plain).max() < 1e-12

# %% [markdown]
# With a causal mask, tiles above the diagonal are skipped, and no tile is larger than 128 × 128. Peak memory,
# measured with `tracemalloc` (`python -m transformer_np bench serve` goes to T = 8192: 260 MiB against 5 MiB):

# %%
def peak_mib(fn):  # noqa: E302
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


rows = []
for T in (512, 1024, 2048, 4096):
    q, k, v = (rng.standard_normal((1, 1, T, 64)).astype(np.float32) for _ in range(3))
    m = tn.causal_mask(T)
    rows.append(dict(T=T, naive_peak_bytes=2**20 * peak_mib(lambda: tn.scaled_dot_product_attention(q, k, v, mask=m)),
                     blockwise_peak_bytes=2**20 * peak_mib(lambda: blockwise_attention(q, k, v, m, 256, 256))))
viz.memory_vs_length(rows);

# %% [markdown]
# ### Why FlashAttention is fast on a GPU
#
# Here the tiles save memory, not time: NumPy still writes each tile's scores to memory and reads them back. On a
# GPU the same algorithm is fast because it changes what crosses the slow link between the chip and its memory
# (HBM). Standard attention writes the $N \times N$ scores out and reads them back twice — $\Theta(Nd + N^2)$
# bytes; FlashAttention (Dao et al. 2022) keeps a tile of keys and values in on-chip memory (SRAM, $M$ values)
# and never lets the scores leave the chip — $\Theta(N^2 d^2 / M)$ (`cost_model.flash_attention_hbm_bytes`, with
# the algorithm's constants). Both grow as $N^2$; their ratio tends to about $M / 3d^2$, so it is the on-chip
# memory against the head width that decides. For one head in float16 with an A100's 192 KB of shared memory
# per streaming multiprocessor, at its 2.0 TB/s:

# %%
from transformer_np.efficient import cost_model as cm

for d in (64, 128):
    for n in (1024, 16384):
        plain_b, flash_b = cm.attention_hbm_bytes(n, d), cm.flash_attention_hbm_bytes(n, d, 192 * 1024)
        print(f"d = {d:3d}, N = {n:6,d}: standard {plain_b / 1e6:7.1f} MB ({1e6 * plain_b / 2.039e12:6.1f} µs),  "
              f"FlashAttention {flash_b / 1e6:6.1f} MB ({1e6 * flash_b / 2.039e12:6.1f} µs): {plain_b / flash_b:4.1f}x fewer")

# %% [markdown]
# The FLOPs are the same (FlashAttention even recomputes some in its backward pass); the bytes fall several-fold
# for d = 64 — the setting of the paper's GPT-2 measurements — and less for d = 128, which is why later versions
# work to use on-chip memory better. Attention of a long sequence is memory-bound on a GPU, so its time falls with
# its bytes.

# %% [markdown]
# ## The paged KV cache
#
# A contiguous cache must reserve, for each request, room for the longest it might become. A paged cache
# allocates **blocks of 16 tokens** from one pool as a sequence grows; each sequence keeps a **block table**.
# Beams of a beam search, or requests with a common prompt, share blocks; a shared block is copied only when one
# of its owners writes into it (copy-on-write). Here, a beam search of width 3 on a small model, with blocks of
# 4 tokens so that the picture stays small:

# %%
lm = tn.DecoderLM(tn.TransformerConfig.lm_tiny(max_len=64), seed=1)
pool = BlockPool.for_model(lm, n_blocks=64, block_size=4)
session = g.LMSession(lm, [[1, 2, 3, 4, 5, 6]], make_cache=paged_cache(pool))
hyps = g.beam_search(session, beam_width=3, max_new_tokens=6)
tables = [pool.tables[s] for s in session.cache.seqs]
viz.block_tables(tables, "Beam search of width 3, blocks of 4 tokens")
assert hyps == g.beam_search(g.LMSession(lm, [[1, 2, 3, 4, 5, 6]]), 3, 6)  # the contiguous cache's result
print("blocks in use:", pool.used_blocks, "| tables:", tables)

# %% [markdown]
# ## Continuous batching
#
# A static batch runs until its longest request is done. With iteration-level scheduling, a finished request
# leaves the batch at once and a waiting one takes its slot at the next step. Each row decodes at its own
# position with a key mask over its own length; every request gets exactly the tokens it gets alone.

# %%
pool = BlockPool.for_model(lm, n_blocks=64, block_size=4)
server = Server(lm, pool, max_batch=4)
work = [([int(t) for t in rng.integers(0, 11, int(rng.integers(2, 8)))], int(rng.integers(2, 14))) for _ in range(10)]
handles = [server.submit(p, n) for p, n in work]
server.run()
for (p, n), h in zip(work, handles):
    assert h.output == g.greedy(g.LMSession(lm, [p]), n)[0]
viz.batching_timeline(server.timeline, len(work))
print(f"{sum(n for _, n in work)} tokens in {server.steps} steps; every block free again: {pool.used_blocks == 0}")

# %% [markdown]
# ## Prefix caching: a conversation's blocks, kept
#
# Every turn of a chat sends the whole conversation again, and every request of an assistant starts with the same
# system prompt. The engine keeps each **whole block** it has computed under a key — the block's tokens and the key
# of the block before it — so a later prompt that starts the same way takes those blocks instead of recomputing
# them (vLLM's automatic prefix caching; SGLang keeps the same information as a radix tree of token runs). A block
# no request holds stays cached until the pool needs room, least recently used first. Two conversations that share
# a system prompt, three turns each, on the small model with blocks of 4 tokens:

# %%
server = Server(lm, BlockPool.for_model(lm, n_blocks=64, block_size=4), max_batch=4)
system = [1, 2, 3, 4, 5, 6, 7, 8, 9]
chats = {"A": system, "B": system}
for turn, messages in enumerate([{"A": [3, 1], "B": [7, 7]}, {"A": [2, 2, 5], "B": [4]}, {"A": [8], "B": [6, 1]}]):
    asked = {name: server.submit(chats[name] + msg, 5) for name, msg in messages.items()}
    server.run()
    for name, h in asked.items():
        assert h.output == g.greedy(g.LMSession(lm, [h.prompt]), 5)[0]  # what it gets alone, cache or not
        chats[name] = h.prompt + h.output  # the next turn sends the whole conversation
    print(f"turn {turn + 1}: " + ", ".join(f"{n} reused {h.cached_tokens} of {len(h.prompt)} prompt tokens"
                                           for n, h in asked.items()))
viz.prefix_tree(server.pool.cache_tree())
print(f"hit rate {server.cache_hits / server.prompt_tokens:.0%} of the prompt tokens")

# %% [markdown]
# The tree branches where the conversations part (after the system prompt's two whole blocks). In turn 1 the two
# conversations arrive together, so neither finds the other's blocks yet (each computes the system prompt; the
# second copy is not kept); from turn 2 on, each reuses its whole conversation so far, except the last partial
# block: only whole blocks are keyed. On SmolLM2 with a 300-token system
# prompt, `bench serve` measures the time to first token with and without the cache.
#
# ## Chunked prefill
#
# A long prompt's prefill is one big step; every running request waits for it, and its next token comes late.
# With a **token budget** per step (Sarathi-Serve, vLLM v1), each step first gives every decoding request its one
# token, then fills the rest with a chunk of a waiting prompt: a long prompt is prefilled over several steps, and
# the others keep decoding. Three requests decode while a 40-token prompt arrives, with a budget of 12:

# %%
def long_prompt_arrives(chunk):  # noqa: E302
    server = Server(lm, BlockPool.for_model(lm, n_blocks=64, block_size=4), max_batch=4, chunk=chunk)
    running = [server.submit([1, 2, 3], 16), server.submit([4, 5], 16), server.submit([6], 16)]
    for _ in range(3):
        server.step()
    late = server.submit([int(t) for t in rng.integers(0, 11, 40)], 4)
    server.run()
    for h in [*running, late]:
        assert h.output == g.greedy(g.LMSession(lm, [h.prompt]), len(h.output))[0]
    return server


chunked, whole = long_prompt_arrives(12), long_prompt_arrives(None)
viz.prefill_timeline(chunked.decode_counts, chunked.prefill_timeline, budget=12);


def largest_step(server):  # noqa: E302
    return max(d + sum(n for _, n in p) for d, p in zip(server.decode_counts, server.prefill_timeline))


print(f"largest step: {largest_step(whole)} tokens with the prompt prefilled whole, {largest_step(chunked)} in "
      f"chunks (the budget: 12)")
assert largest_step(chunked) <= 12 < largest_step(whole)

# %% [markdown]
# ## Arrivals, and what users feel
#
# A server is judged by percentiles: the **time to first token** (TTFT: waiting, then the prefill), the **time
# per output token** after it (TPOT: the decode steps, slower in a fuller batch) and the whole request, at the
# median and the tail (p90, p99). `poisson_workload` draws requests arriving as a Poisson process, with
# log-normal prompt and answer lengths, here every prompt starting with a 24-token system prompt; `simulate`
# serves them in real time and reports the percentiles. With the prefix cache, most of each prompt is not
# computed again:

# %%
from transformer_np.efficient.serve import poisson_workload, simulate  # noqa: E402

work = poisson_workload(np.random.default_rng(1), 24, rate=200.0, vocab_size=11, prompt_mean=8, output_mean=8,
                        max_prompt=16, max_output=24, system_prompt=24)
sims = {f"prefix cache {'on' if on else 'off'}": simulate(lm, work, max_batch=4, n_blocks=128, block_size=4,
                                                          prefix_cache=on) for on in (False, True)}
viz.latency_percentiles(sims, "24 requests, 200 a second, a 24-token system prompt (the small model)");
prefilled = {name: sum(n for step in sim["server"].prefill_timeline for _, n in step) for name, sim in sims.items()}
for name, sim in sims.items():
    print(f"{name}: {prefilled[name]} prompt tokens computed, hit rate {sim['prefix_hit_rate']:.0%}; "
          f"{sim['tokens_per_s']:.0f} tokens/s, TTFT p50 {1e3 * sim['ttft_s'][50]:.1f} ms")
assert prefilled["prefix cache on"] < prefilled["prefix cache off"] / 2

# %% [markdown]
# The small model's steps are a few microseconds of arithmetic and mostly Python, so its times move from run to
# run and say little about the cache: only the work saved is certain here. `python -m transformer_np bench serve`
# measures SmolLM2, where the prefill is the cost (a 300-token system prompt: time to first token 3.4× lower;
# [docs/benchmarks.md](../docs/benchmarks.md#serving-bench-serve)), and
# `python -m transformer_np serve-sim --model smollm2 --rate 4 --system-prompt 300 --turns 3` replays any such
# workload.
#
# ## Talking to the server
#
# `python -m transformer_np serve --model smollm2 --port 8000` puts the engine behind an OpenAI-compatible HTTP
# API, so any program that speaks to LLM services can use it. Here it runs in this notebook's process, on a free
# port, and the official `openai` client talks to it (streaming too); every concurrent request is batched by the
# engine, step by step.

# %%
import socket  # noqa: E402
import threading  # noqa: E402

from transformer_np.cli.openai_api import make_app, uvicorn_server  # noqa: E402

model = load_smollm2()
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
http = uvicorn_server(make_app(model, n_blocks=256), log_level="warning")
thread = threading.Thread(target=http.run, kwargs={"sockets": [sock]}, daemon=True)
thread.start()
while not http.started:
    time.sleep(0.05)
base_url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
try:
    import openai

    client = openai.OpenAI(base_url=base_url, api_key="none")
    answer = client.chat.completions.create(model=model.name, max_tokens=24, temperature=0,
                                            messages=[{"role": "user", "content": "What is the capital of France?"}])
    print(answer.choices[0].message.content, "|", answer.usage)
    for chunk in client.chat.completions.create(model=model.name, max_tokens=16, stream=True, temperature=0,
                                                messages=[{"role": "user", "content": "Name three colors."}]):
        print(chunk.choices[0].delta.content or "", end="|")
except ImportError:  # the client is a test dependency: the same request with the standard library
    import json
    import urllib.request

    body = {"model": model.name, "max_tokens": 24, "temperature": 0,
            "messages": [{"role": "user", "content": "What is the capital of France?"}]}
    request = urllib.request.Request(f"{base_url}/chat/completions", json.dumps(body).encode(),
                                     {"content-type": "application/json"})
    print(json.load(urllib.request.urlopen(request))["choices"][0]["message"]["content"])
http.should_exit = True
thread.join()

# %% [markdown]
# ## Speculative decoding on SmolLM2
#
# A draft proposes γ tokens; the target model scores all of them in one pass; drafts are kept while they agree
# with the target (greedy), so the output is exactly greedy decoding's. The draft here costs nothing: **prompt
# lookup** copies what followed the last occurrence of the current n-gram — useful when the answer repeats its
# input. Green tokens were proposed by the draft and accepted; red ones come from the target's pass.

# %%
text = ("The cat sat on the mat. The dog sat on the log. The cat and the dog sat together on the mat and the log. "
        "Then the bird sat on the branch, the fish swam in the pond, and the cat, the dog and the bird watched "
        "the fish swim round and round in the little pond until the sun went down.")
ids = model.chat_ids([{"role": "user", "content": f"Repeat this text exactly: {text}"}])
t0 = time.perf_counter()
plain = model.generate(ids, 64)
plain_s = time.perf_counter() - t0
t0 = time.perf_counter()
out, stats = speculative_generate(model, PromptLookup(model.config.vocab_size), ids, 64, gamma=4,
                                  eos_id=model.eos_id)
spec_s = time.perf_counter() - t0
assert out == plain  # the same tokens as plain greedy decoding
kinds = [k for n in stats.accepted_per_call for k in ["draft"] * n + ["target"]][: len(out)]
viz.speculative_tokens([model.detokenize([t]) for t in out], kinds, "Prompt lookup on SmolLM2")
alpha = stats.acceptance_rate
print(f"{len(out)} tokens in {stats.target_calls} target passes; drafts accepted in each pass: {stats.accepted_per_call}")
print(f"acceptance α = {alpha:.0%}; tokens per target pass: measured {stats.tokens_per_call:.2f}, "
      f"(1 − α^(γ+1)) / (1 − α) = {expected_speedup(alpha, 4, 0.0):.2f} if each draft were kept independently")
print(f"speed-up: measured {plain_s / spec_s:.2f}× (this run)")
assert abs(stats.tokens_per_call - expected_speedup(alpha, 4, 0.0)) > 0.3  # what the text below says

# %% [markdown]
# Leviathan et al.'s expected speed-up, $(1-\alpha^{\gamma+1}) / ((1-\alpha)(\gamma c+1))$, assumes each drafted token
# is kept independently with probability α. Prompt lookup's drafts are not like that: a copied span tends to
# match the target's continuation entirely or to break at once, so most passes above keep all γ drafts or none
# (the list) — acceptances come in runs. α is then a fraction of drafts, not a per-token probability, and the
# formula's tokens per pass, evaluated at it, is not a prediction for this draft: it misses the measured count.
#
# On this CPU a pass over 5 tokens costs about 1.85× a pass over one (OpenBLAS's matrix-matrix product packs the
# weights; the matrix-vector product of a single token streams them), so the measured speed-up is lower than
# that formula's — see the README's `bench serve` numbers. On a GPU, where one pass is bound by reading the
# weights whatever the number of tokens, the formula holds much better.

# %% [markdown]
# ## A draft head distilled from SmolLM2 (EAGLE)
#
# Prompt lookup pays only when the answer copies the prompt, and the model's own first 10 blocks as a draft
# (`early_exit`) are accepted 1–2% of the time: they were never trained to end there. No smaller model shares
# SmolLM2's tokenizer offline, so the draft is made here, the way EAGLE (Li et al. 2024) and Medusa (Cai et al.
# 2024) make theirs: a small **head** trained on the target's own hidden states. SmolLM2 reads every next token out
# of one vector, its last block's output after the final norm, $f_t$ (logits $= f_t E^\top$). The head predicts
# the *next* such vector from the current one and the token just chosen, and reads its guess out through the
# target's own output layer:
#
# $$z_t = [E_{x_{t+1}}, f_t]\,W_{fc} + b_{fc}, \qquad \hat f_{t+1} = \mathrm{Block}(z_{\le t})_t, \qquad
#   q(x_{t+2}) = \mathrm{softmax}(\hat f_{t+1} E_S^\top)$$
#
# — one Llama block at SmolLM2's width (4.2 M weights, 8.5 MB in float16, against the target's 135 M), and only the
# rows $S$ of the 8,192 tokens most frequent in its training text (the full readout, $C \cdot V = 28$ M
# multiply-adds, would cost seven times the block). To draft γ tokens the head feeds each guess $\hat f$ back in.
#
# **Distillation.** The target is the *teacher*: it runs once over a training text — its own greedy answers to
# 820 prompts written for the package, and standard-library docstrings; never the prompts used below — and its
# features are kept. The head is the *student*, trained (with the package's hand-written backward passes,
# `efficient/draft.py`) to minimise
#
# $$L = \mathrm{KL}(p_{t+1} \,\|\, q_{t+1}) + \lambda \cdot \mathrm{mean}\ \mathrm{SmoothL1}(\hat f_{t+1} - f_{t+1}),
#   \qquad p = \mathrm{softmax}(f E_S^\top)$$
#
# The KL term matches the teacher's whole distribution, not only its top token: a wrong guess that the teacher
# found almost as likely costs little, which is more signal per token than the top token alone (Hinton et al.'s
# "dark knowledge"). The regression term keeps $\hat f$ close to a real feature, so that the head's later steps,
# which read its own guesses, still see the kind of input they were trained on. The shipped head was trained by
# `python -m transformer_np distill-draft`; its file keeps how:

# %%
from transformer_np.efficient.draft import (EVAL_PROMPTS, HeadDraft, distill_loss, embed, head_forward,  # noqa: E402
                                            init_head_params, load_shipped_head, readout_rows)
from transformer_np.efficient.speculative import tokens_per_pass  # noqa: E402

head = load_shipped_head()
info = head.info
print(head)
print(f"trained on {info['tokens']:,} tokens ({info['sequences']} texts), {info['steps']} steps of one text, "
      f"{info['train_seconds']} s")
viz.draft_head_training(info["curve"], info["held_out_kl"], info["held_out_top1"])

# %% [markdown]
# The student against an untrained one on a text none of its training texts contain: SmolLM2's own answer to an
# evaluation prompt. One forward pass gives the teacher's features of the whole text; the loss reads them.

# %%
question = EVAL_PROMPTS[2]
ids = model.chat_ids([{"role": "user", "content": question}])
t0 = time.perf_counter()
answer = model.generate(ids, 48)  # plain greedy decoding: the reference
plain_s = time.perf_counter() - t0
text_ids = np.array([ids + answer])
features = model.features(text_ids)  # (1, T, C): the teacher's f_t
embedded = embed(model, text_ids)  # (1, T, C): E_x
w_rows = readout_rows(model, head.rows)  # (C, K): the readout on the rows S
scores = {name: distill_loss(params, head.config, features, embedded, w_rows)[2]
          for name, params in (("untrained", init_head_params(head.config)), ("distilled", head.params))}
for name, s in scores.items():
    print(f"{name:>9}: KL {s['kl']:.2f} nats, top token = the teacher's {s['top1']:.0%} of the time")
assert scores["distilled"]["kl"] < scores["untrained"]["kl"] / 2
print(question, "->", model.detokenize(answer)[:200], "…")

# %% [markdown]
# Now the head drafts γ = 3 tokens a pass on the same question. The target's pass decides, so the answer is plain
# greedy decoding's token for token; green tokens were drafted by the head and accepted.

# %%
gamma = 3
t0 = time.perf_counter()
out, stats = speculative_generate(model, HeadDraft(head, model), ids, 48, gamma, eos_id=model.eos_id)
spec_s = time.perf_counter() - t0
assert out == answer  # exact
kinds = [k for n in stats.accepted_per_call for k in ["draft"] * n + ["target"]][: len(out)]
viz.speculative_tokens([model.detokenize([t]) for t in out], kinds, "The distilled head on SmolLM2")
alphas = stats.acceptance_by_position(gamma)
alpha = stats.acceptance_rate
viz.acceptance_by_position(alphas, alpha)
print(f"acceptance by position α_i: {[None if a is None else round(a, 2) for a in alphas]}; overall α = {alpha:.2f}")
print(f"tokens per target pass: measured {stats.tokens_per_call:.2f}; 1 + Σ_i Π_(j≤i) α_j = "
      f"{tokens_per_pass([a or 0.0 for a in alphas]):.2f}; independent α: (1 − α^(γ+1)) / (1 − α) = "
      f"{expected_speedup(alpha, gamma, 0.0):.2f}")
print(f"this run: plain {plain_s:.2f} s, speculative {spec_s:.2f} s ({plain_s / spec_s:.2f}×)")

# %% [markdown]
# The acceptance is not one number: the first draft of a pass reads the target's true feature, the later ones the
# head's own guesses, so α differs by position (over `bench speculative`'s 20 prompts it falls from 0.29 at the
# first to 0.10 at the third), and the expected tokens per pass is $1 + \sum_i \prod_{j \le i} \alpha_j$ — not the
# independence formula at one overall rate, which mixes the positions as if each were reached as often.
#
# **Where the time goes.** A pass over γ + 1 tokens is not free on a CPU. For one token each matrix product is a
# matrix-vector product that streams the weights once; for a few tokens OpenBLAS's matrix-matrix product first
# copies ("packs") the whole weight into its panel layout, so a 5-token pass cost 3.1× a 1-token one until the
# package learned to multiply a few rows block by block of cache-sized rows of the weight
# (`core.fast.few_rows_matmul`); it still costs 2.2–2.5×. With 1.35 tokens a pass, drafting cannot pay here:
# `bench speculative` measures each part, and its committed run says so:

# %%
root = Path.cwd() if (Path.cwd() / "docs").exists() else Path.cwd().parent
spec_run = json.loads((root / "docs/bench_speculative.json").read_text())
for fmt, ms in spec_run["pass_ms"].items():
    print(f"{fmt}: a target pass over T tokens, ms: "
          + ", ".join(f"T={T} {v:.0f} ({v / ms['1']:.1f}×)" for T, v in ms.items()))
for r in spec_run["rows"]:
    if r["verify_ms_per_pass"] is None:  # a token tree: 2 branches of 3 verified in one pass
        print(f"{r['weights']:>8} {r['gamma']}: {r['tokens_per_pass']:.2f} tokens a pass: {r['speedup']:.2f}×")
        continue
    print(f"{r['weights']:>8} γ={r['gamma']}: α_i {[None if a is None else round(a, 2) for a in r['alphas']]}, "
          f"{r['tokens_per_pass']:.2f} tokens a pass, draft {r['draft_ms_per_pass']:.0f} ms + verify "
          f"{r['verify_ms_per_pass']:.0f} ms a pass against {r['plain_ms_per_token']:.0f} ms a plain token: "
          f"{r['speedup']:.2f}×")

# %% [markdown]
# On a GPU a pass over 5 tokens costs about one over 1 (both are bound by reading the weights), so the same
# acceptance would pay $\approx$ tokens-per-pass / (1 + γc) — the reason speculative decoding is standard on GPUs.
#
# **Why speculative *sampling* is exact.** With temperature, the draft samples $d \sim q$ and the target keeps it
# with probability $\min(1, p(d)/q(d))$; on a rejection it samples from the residual
# $r = \max(0, p - q) / \sum \max(0, p - q)$. The probability that the emitted token is $x$:
#
# $$P(x) = q(x)\min\!\Big(1, \tfrac{p(x)}{q(x)}\Big) + \Big(1 - \sum_y \min(p(y), q(y))\Big)\, r(x)
#        = \min(p(x), q(x)) + \max(0, p(x) - q(x)) = p(x),$$
#
# since $1 - \sum_y \min(p, q) = \sum_y \max(0, p - q)$ (both p and q sum to 1). Run on a real position — the
# target's p and the head's q (on its rows S, zero elsewhere) after the question above:

# %%
n = len(ids)  # the head reads (f_t, E_{x_{t+1}}) for t < n, so its guess is for the token after answer[0]
f_hat, _ = head_forward(features[:, :n], embedded[:, 1:n + 1], head.params, head.config, np.arange(n))
q = np.zeros(model.config.vocab_size)
q[head.rows] = tn.core.nn.softmax(np.asarray(f_hat[0, -1] @ w_rows, np.float64))  # the draft's q, 0 off S
p = tn.core.nn.softmax(np.asarray(features[0, n] @ model.output_weight(), np.float64))  # the target's p
keep = np.minimum(1.0, np.divide(p, q, out=np.ones_like(p), where=q > 0))  # kept with prob. min(1, p/q)
residual = np.maximum(0.0, p - q) / np.maximum(0.0, p - q).sum()
emitted = q * keep + (1.0 - np.sum(np.minimum(p, q))) * residual
np.testing.assert_allclose(emitted, p, atol=1e-12)  # exactly the target's distribution
print(f"P(draft accepted) = Σ min(p, q) = {np.minimum(p, q).sum():.3f}; the emitted token is distributed as p "
      f"(max |P − p| = {np.abs(emitted - p).max():.1e}); p's top token {model.detokenize([int(p.argmax())])!r}, "
      f"q's {model.detokenize([int(q.argmax())])!r}")

# %% [markdown]
# ## Exercises
#
# **1.** Write `my_online_softmax(tiles)`: the scores arrive one tile at a time (an iterator of 1-D arrays; each
# tile is written over the last, as in a GPU's on-chip memory). Return `(m, l)` — the largest score and
# $\ell = \sum_j e^{s_j - m}$ — keeping only m and ℓ between tiles; then softmax(s) = exp(s − m) / ℓ. (The
# checker's scores climb by hundreds from tile to tile.)

# %%
from transformer_np.teaching import exercises

my_online_softmax = None  # replace with your function

# %%
exercises.check_online_softmax(my_online_softmax)

# %% [markdown]
# **2.** How many blocks of 16 tokens does a paged cache need for requests of lengths `lengths`, and how many
# token slots does it waste? Write `my_blocks(lengths, block)` returning `(blocks, wasted_slots)`.

# %%
my_blocks = None  # replace with your function

# %%
exercises.check_paged_blocks(my_blocks)

# %% [markdown]
# ## References
#
# - Milakov & Gimelshein 2018, *Online Normalizer Calculation for Softmax* (arXiv:1805.02867); Rabe & Staats 2021,
#   *Self-attention Does Not Need O(n²) Memory* (arXiv:2112.05682); Dao et al. 2022, *FlashAttention*
#   (arXiv:2205.14135): blockwise attention.
# - Kwon et al. 2023, *Efficient Memory Management for LLM Serving with PagedAttention* (arXiv:2309.06180).
# - Yu et al. 2022, *Orca: A Distributed Serving System for Transformer-Based Generative Models* (OSDI '22):
#   continuous (iteration-level) batching.
# - Leviathan, Kalman & Matias 2023 (arXiv:2211.17192) and Chen et al. 2023 (arXiv:2302.01318): speculative
#   decoding; Saxena 2023, prompt lookup decoding (github.com/apoorvumang/prompt-lookup-decoding).
# - Li, Wei, Zhang & Zhang 2024, *EAGLE: Speculative Sampling Requires Rethinking Feature Uncertainty*
#   (arXiv:2401.15077): the draft head on the target's features; Cai et al. 2024, *Medusa* (arXiv:2401.10774) and
#   Li et al. 2024, *EAGLE-2* (arXiv:2406.16858): token trees verified in one pass; Hinton, Vinyals & Dean 2015,
#   *Distilling the Knowledge in a Neural Network* (arXiv:1503.02531).
