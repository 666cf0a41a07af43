"""``mpiexec -n N python -m transformer_np tp-generate --model smollm2 --prompt "…"``: greedy decoding with the
model split over N MPI ranks (efficient/tensor_parallel_mpi.py: heads and FFN columns per rank, two all-reduces
per block).
Rank 0 prints the tokens, how the heads were split, and where the time and the bytes went; with ``--check`` it
also runs the unsplit model in its own process and compares.  Without mpiexec it runs as one rank."""

from __future__ import annotations

import contextlib
import sys
import time

import numpy as np

from ..core.tree import tree_map
from ..decoding.sessions import LMSession, Seq2SeqSession, as_prompts
from ..efficient import tensor_parallel_mpi as mpi
from ..model.models import Transformer
from ..pretrained import registry
from ..pretrained.llama import LlamaConfig, LlamaModel, init_llama_params
from ..training.tasks import BOS, EOS
from .llm import load_llm
from .options import CommandError, positive_int, progress_bar

MODELS = ("smollm2", "reverse", "dates", "tiny-llama")

HELP = "greedy decoding with the model split over MPI ranks (run under mpiexec -n N)"
ERRORS = (ImportError, ValueError, NotImplementedError)


def add_arguments(parser):
    parser.add_argument("--model", choices=MODELS, default="smollm2",
                        help="smollm2, the shipped encoder-decoders reverse and dates, or tiny-llama (random, "
                             "SmolLM2's 9 query / 3 K/V heads)")
    parser.add_argument("--prompt", action="append", required=True,
                        help="text (smollm2, reverse, dates) or token ids (tiny-llama); repeat for a batch")
    parser.add_argument("--max-new-tokens", type=positive_int, default=16)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--check", action="store_true",
                        help="rank 0 also decodes with the whole model and compares tokens and logits")


def load(name, dtype="float32"):
    """(model, tokenizer or None, session factory, eos id) in ``dtype``; tiny-llama is a seeded random Llama with
    SmolLM2's head layout (9 query heads over 3 K/V heads) and an untied output layer, small enough for tests."""
    cast = lambda p: tree_map(lambda a: a.astype(dtype, copy=False), p)  # noqa: E731 - no copy if already dtype
    if name == "smollm2":
        m = load_llm(name)
        model = LlamaModel(cast(m.params), m.config, m.tokenizer, eos_id=m.eos_id, name=m.name)
        return model, m.tokenizer, LMSession, None
    if name == "tiny-llama":
        cfg = LlamaConfig(d_model=72, n_heads=9, n_kv_heads=3, n_layers=3, d_ff=60, vocab_size=97, max_len=128,
                          tied_embeddings=False)
        return LlamaModel(cast(init_llama_params(cfg, 0)), cfg, None, name=name), None, LMSession, None
    m = registry.load(name)
    new_session = lambda m, prompts: Seq2SeqSession(m, prompts, bos_id=BOS)  # noqa: E731
    return m.with_params(cast(m.params)), m.tokenizer, new_session, EOS


def shard(model, n, rank, comm, stats):
    """The same kind of model as ``model``, holding rank ``rank``'s shard of its weights."""
    if isinstance(model, LlamaModel):
        params, cfg = mpi.shard_llama(model.params, model.config, n, rank, comm, stats)
        return LlamaModel(params, cfg, model.tokenizer, eos_id=model.eos_id, name=model.name)
    params, cfg = mpi.shard_transformer(model.params, model.config, n, rank, comm, stats)
    return Transformer.from_config(cfg, params)


ABORT_GRACE_S = 0.5  # seconds between a rank's error line and the Abort that ends the job


def run(args, print_fn=print):
    """Two phases: reading the model and the prompts, the same on every rank and without communication — an error
    there is printed by rank 0 alone and every rank exits 2; then the split model's decoding — an error there is
    one rank's, printed by that rank, and ends the whole job (MPI Abort), so that no rank waits forever in a
    collective the failed one will never join."""
    comm = mpi.mpi_world()
    try:
        model, tokenizer, new_session, eos = load(args.model, args.dtype)
        prompts = _prompts(args, tokenizer)
        as_prompts(prompts, model.config, name="--prompt")  # ids in the vocabulary, within the context
    except (CommandError, *ERRORS):
        if comm.Get_rank() == 0:
            raise  # cli.main prints it: one "error:" line
        return 2
    try:
        bar = progress_bar(args.max_new_tokens, "decode", "step") if comm.Get_rank() == 0 else contextlib.nullcontext()
        with bar as progress:
            r = mpi.tp_greedy(model, shard, new_session, prompts, args.max_new_tokens, comm, eos, check=args.check,
                              progress=progress)
        if r["rank"] == 0:
            report(r, model, tokenizer, prompts, args, print_fn)
    except (CommandError, OSError, *ERRORS) as e:
        if comm.Get_size() == 1:
            raise
        print(f"error: rank {comm.Get_rank()} of {comm.Get_size()}: {e}", file=sys.stderr, flush=True)
        # mpiexec forwards each rank's stderr through its proxies, which Abort kills: on a loaded machine the line
        # was lost (1 run in ~100, the test saw an empty stderr); a moment first lets it through
        time.sleep(ABORT_GRACE_S)
        comm.Abort(2)
    return 0 if not args.check or r["rank"] != 0 or r["reference_tokens"] == r["tokens"] else 1


def _prompts(args, tokenizer):
    if tokenizer is not None:
        return [tokenizer.encode(p) for p in args.prompt]
    try:
        return [[int(t) for t in p.replace(",", " ").split()] for p in args.prompt]
    except ValueError:
        raise CommandError(f"--prompt: {args.model} takes token ids separated by spaces") from None


def report(r, model, tok, prompts, args, print_fn):
    n, stats = r["n"], r["stats"]
    cfg = model.config
    show = (lambda ids: repr(tok.decode(ids))) if tok is not None else str
    itemsize = 8 if args.dtype == "float64" else 4
    print_fn(f"tensor-parallel over {n} MPI rank{'s' * (n > 1)}: {args.model}, {args.dtype}")
    for i, (q, kv) in enumerate(r["partition"]):
        print_fn(f"  rank {i}: query heads {q[0]}-{q[-1]} ({len(q)}), K/V heads {kv[0]}-{kv[-1]} ({len(kv)}), "
                 f"FFN columns {_ffn_cols(cfg.d_ff, n, i)}")
    for p, t in zip(prompts, r["tokens"]):
        print_fn(f"prompt {show(p)} -> {show(t)}")
    session = r["session"]
    if isinstance(session, Seq2SeqSession):  # encoder-decoder: the encoder ran once over the sources
        src = session.memory.shape[0] * session.memory.shape[1]
        processed = session.tokens.size
        expected = mpi.seq2seq_allreduce_bytes(cfg, src, processed, itemsize)
        what = f"{src} source + {processed} target tokens"
    else:
        processed = session.tokens.size  # every token fed (the last one chosen is not: it is not in tokens)
        expected = processed * mpi.allreduce_bytes_per_token(cfg, itemsize)
        what = f"{processed} tokens fed (prompt padding included)"
    compute = r["seconds"] - stats.comm_seconds
    print_fn(f"time on rank 0: {r['seconds']:.3f} s = compute {compute:.3f} s + communication "
             f"{stats.comm_seconds:.3f} s ({stats.allreduce_calls} all-reduces, logits all-gathered "
             f"{stats.allgather_bytes:,} bytes)")
    print_fn(f"all-reduced {stats.allreduce_bytes:,} bytes for {what}; formula {expected:,} "
             f"({'equal' if expected == stats.allreduce_bytes else 'DIFFERENT'})")
    print_fn(f"KV cache on rank 0: {r['session'].cache_bytes():,} bytes")
    if "reference_tokens" in r:
        same = r["reference_tokens"] == r["tokens"]
        print_fn(f"check: one process gives {'the same tokens' if same else 'DIFFERENT tokens'}; largest "
                 f"|logit difference| {r['max_logit_gap']:.2e}; its KV cache {r['reference_kv_bytes']:,} bytes")


def _ffn_cols(d_ff, n, i):
    cols = np.array_split(np.arange(d_ff), n)[i]
    return f"{cols[0]}-{cols[-1]} ({len(cols)})"
