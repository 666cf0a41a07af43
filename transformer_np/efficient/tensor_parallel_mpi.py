r"""Tensor-parallel inference over MPI: Megatron's 1D layout (Shoeybi et al. 2019), one rank per process.

Every rank holds the whole residual stream x (B, T, C) and a slice of every block:

    attention   its query heads' columns of W_Q, their K/V heads' columns of W_K, W_V (and biases), the same
                heads' rows of W_O:  x W_O = Σ_ranks (heads_r) W_O[rows_r]  →  one all-reduce per attention
    FFN         columns F_r of W_in (W_gate and W_up for SwiGLU) and the same rows of W_out: the activation is
                element-wise, so each rank's F_r columns are complete;  Σ_ranks  →  one all-reduce per FFN
    KV cache    each rank caches only its own K/V heads: the cache is sharded with the heads
    logits      the output matrix split by vocabulary columns, the (B, V) logits all-gathered: every rank then
                holds the same bytes and picks the same token (embeddings and norms are replicated)

The all-reduces live in the weights: W_O and W_out become :class:`AllReduceMatrix` objects whose ``x @ W`` is the
local product followed by ``Allreduce`` — so the model's own forward functions run unchanged on each rank with a
config that names the rank's head counts (:class:`LocalConfig`).  Bytes all-reduced per forward:
2 · L · B · T · C · itemsize for a decoder-only model (3 per decoder layer with cross-attention).

How the heads split (:func:`head_partition`) when they do not divide evenly — SmolLM2 has H = 9 query heads in
H_kv = 3 groups of G = 3 sharing a K/V head:

    n ≤ H_kv   whole groups per rank, as even as possible: n = 2 → 6 + 3 query heads (2 + 1 K/V heads, uneven);
               n = 3 → one group each
    n > H_kv   every rank takes query heads of one group only and replicates that group's K/V head:
               n = 4 → group 0 split over two ranks (2 + 1 heads, its K/V head on both), groups 1, 2 whole:
               query heads 2, 1, 3, 3 per rank, K/V heads 1 each (4 cached where 3 exist)

Run with ``mpiexec -n N python -m transformer_np tp-generate …``; across machines ``mpiexec -hosts a,b …``.
mpi4py is an optional dependency (``pip install 'transformer_np[mpi]'`` installs it with MPICH).
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from ..core.checks import check_positive_int
from ..core.weights import StoredWeight
from ..decoding.search import greedy

INSTALL = "pip install mpi4py mpich   (or: pip install 'transformer_np[mpi]')"


def mpi_world():
    """mpi4py's COMM_WORLD, or an ImportError saying how to install it."""
    try:
        from mpi4py import MPI  # noqa: PLC0415 - optional: only tensor-parallel runs need it
    except ImportError as e:
        raise ImportError(f"tensor-parallel inference needs mpi4py and an MPI library: {INSTALL}") from e
    return MPI.COMM_WORLD


@dataclasses.dataclass
class CommStats:
    """What one rank's collectives did: calls, payload bytes (the local buffer's size) and wall time."""

    allreduce_calls: int = 0
    allreduce_bytes: int = 0
    allgather_bytes: int = 0
    comm_seconds: float = 0.0


# --- how the heads and the FFN columns split -------------------------------------------------------------------
def head_partition(n_heads, n_kv_heads, n):
    """For each of n ranks: (query heads, K/V heads) as two lists, every rank's query heads sharing its K/V heads
    in equal groups (see the module docstring for the rule)."""
    for name, v in (("n_heads", n_heads), ("n_kv_heads", n_kv_heads), ("n", n)):
        check_positive_int(name, v)
    if n > n_heads:
        raise ValueError(f"n={n} ranks is more than the n_heads={n_heads} query heads to split")
    G = n_heads // n_kv_heads
    if n <= n_kv_heads:
        groups = np.array_split(np.arange(n_kv_heads), n)
        return [([h for j in g for h in range(j * G, (j + 1) * G)], [int(j) for j in g]) for g in groups]
    parts = []
    for j, ranks in enumerate(np.array_split(np.arange(n), n_kv_heads)):
        if len(ranks) > G:
            raise ValueError(f"n={n} ranks cannot share {n_kv_heads} groups of {G} query heads")
        parts += [([int(h) for h in heads], [j]) for heads in np.array_split(np.arange(j * G, (j + 1) * G), len(ranks))]
    return parts


def columns(heads, d_head):
    """The columns of a (C, H·D) projection that belong to ``heads``."""
    return np.concatenate([np.arange(h * d_head, (h + 1) * d_head) for h in heads])


class LocalConfig:
    """The model's config as one rank runs it: its own query and K/V head counts, everything else the model's
    (d_model and d_head included: the residual stream is whole on every rank)."""

    def __init__(self, cfg, n_heads, n_kv_heads):
        self._cfg, self.n_heads, self.n_kv_heads, self.kv_heads = cfg, n_heads, n_kv_heads, n_kv_heads

    def __getattr__(self, name):
        return getattr(self._cfg, name)

    def __repr__(self):
        return f"LocalConfig(H={self.n_heads}, H_kv={self.n_kv_heads} of {self._cfg!r})"


# --- weights whose product is a collective ------------------------------------------------------------------
class AllReduceMatrix(StoredWeight):
    r"""Rows R_r of a (C_in, C_out) weight; ``x @ W`` = Allreduce_r(x_r W[R_r]) with x_r the rank's C_in slice.
    (Its shape and ``dequantize()`` are the rank's rows: the input it takes is the rank's slice.)"""

    def __init__(self, rows, comm, stats):
        super().__init__(rows.shape)
        self.rows, self.comm, self.stats = np.ascontiguousarray(rows), comm, stats
        self.compute_dtype = self.rows.dtype

    @property
    def nbytes(self):
        return self.rows.nbytes

    def dequantize_stored(self, rows=None):
        return self.rows if rows is None else self.rows[rows]

    def matmul(self, x):
        y = np.ascontiguousarray(x @ self.rows)
        t0 = time.perf_counter()
        self.comm.Allreduce(_in_place(), y)
        self.stats.comm_seconds += time.perf_counter() - t0
        self.stats.allreduce_calls += 1
        self.stats.allreduce_bytes += y.nbytes
        return y


class AllGatherMatrix(StoredWeight):
    r"""Columns V_r of a (C_in, V) weight; ``x @ W`` = the (N, V) product, each rank computing its V_r columns and
    all-gathering the rest."""

    def __init__(self, w, n, rank, comm, stats):
        super().__init__(w.shape)
        self.counts = [len(c) for c in np.array_split(np.arange(w.shape[1]), n)]
        start = sum(self.counts[:rank])
        self.cols = np.ascontiguousarray(w[:, start:start + self.counts[rank]])
        self.comm, self.stats, self.compute_dtype = comm, stats, w.dtype

    @property
    def nbytes(self):
        return self.cols.nbytes

    def _gather(self, part):
        """(V, N) from every rank's (V_r, N) rows."""
        out = np.empty((self._shape[1], part.shape[1]), part.dtype)
        t0 = time.perf_counter()
        self.comm.Allgatherv(np.ascontiguousarray(part), [out, [c * part.shape[1] for c in self.counts]])
        self.stats.comm_seconds += time.perf_counter() - t0
        self.stats.allgather_bytes += out.nbytes
        return out

    def dequantize_stored(self, rows=None):
        w = self._gather(self.cols.T).T  # (C_in, V): every rank's columns
        return w if rows is None else w[rows]

    def matmul(self, x):
        return self._gather((x @ self.cols).T).T  # (N, V): the gather concatenates along V


class TiedTable(StoredWeight):
    """A tied embedding table: every row on every rank for the lookup, ``.T`` an :class:`AllGatherMatrix`."""

    def __init__(self, table, n, rank, comm, stats):
        super().__init__(table.shape)
        self.table, self.compute_dtype = table, table.dtype
        self.gather = AllGatherMatrix(table.T, n, rank, comm, stats)

    @property
    def T(self):  # noqa: N802 - the array attribute's name
        return self.gather

    @property
    def nbytes(self):
        return self.table.nbytes + self.gather.nbytes

    def dequantize_stored(self, rows=None):
        return self.table if rows is None else self.table[rows]


def _in_place():
    from mpi4py import MPI  # noqa: PLC0415 - optional

    return MPI.IN_PLACE


# --- sharding a params tree ------------------------------------------------------------------------------
def shard_attention(p, q_heads, kv_heads, d_head, reduce):
    """One rank's attention weights: its heads' columns of W_Q, W_K, W_V (and biases), rows of W_O."""
    qc, kc = columns(q_heads, d_head), columns(kv_heads, d_head)
    out = {"w_q": p["w_q"][:, qc], "w_k": p["w_k"][:, kc], "w_v": p["w_v"][:, kc], "w_o": reduce(p["w_o"][qc])}
    for b, c in (("b_q", qc), ("b_k", kc), ("b_v", kc)):
        if b in p:
            out[b] = None if p[b] is None else p[b][c]
    if "b_o" in p:
        out["b_o"] = p["b_o"]  # added once, after the all-reduce
    return out


def shard_llama(params, cfg, n, rank, comm, stats):
    """(params, LocalConfig) of rank ``rank`` of n for a Llama-architecture model (SmolLM2)."""
    q_heads, kv_heads = head_partition(cfg.n_heads, cfg.n_kv_heads, n)[rank]
    f = np.array_split(np.arange(cfg.d_ff), n)[rank]
    reduce = lambda w: AllReduceMatrix(w, comm, stats)  # noqa: E731
    layers = []
    for lp in params["decoder"]["layers"]:
        ffn = lp["ffn"]
        layers.append({"attn_norm": lp["attn_norm"], "ffn_norm": lp["ffn_norm"],
                       "attn": shard_attention(lp["attn"], q_heads, kv_heads, cfg.d_head, reduce),
                       "ffn": {"w_gate": ffn["w_gate"][:, f], "w_up": ffn["w_up"][:, f],
                               "w_down": reduce(ffn["w_down"][f])}})
    out = {"embed": {"table": TiedTable(params["embed"]["table"], n, rank, comm, stats)},
           "decoder": {"layers": layers}, "norm": params["norm"]}
    if not cfg.tied_embeddings:
        out["embed"]["table"] = params["embed"]["table"]
        out["out"] = {"w": AllGatherMatrix(params["out"]["w"], n, rank, comm, stats)}
    return out, LocalConfig(cfg, len(q_heads), len(kv_heads))


def shard_transformer(params, cfg, n, rank, comm, stats):
    """(params, LocalConfig) of rank ``rank`` of n for an encoder-decoder TransformerConfig model."""
    if cfg.kv_heads != cfg.n_heads:
        raise NotImplementedError("tensor parallelism of a grouped-query encoder-decoder")
    heads = head_partition(cfg.n_heads, cfg.n_heads, n)[rank][0]
    f = np.array_split(np.arange(cfg.d_ff), n)[rank]
    reduce = lambda w: AllReduceMatrix(w, comm, stats)  # noqa: E731

    def layer(lp):
        out = {k: v for k, v in lp.items() if k.startswith("norm")}
        for a in ("self_attn", "cross_attn"):
            if a in lp:
                out[a] = shard_attention(lp[a], heads, heads, cfg.d_head, reduce)
        ffn = lp["ffn"]
        out["ffn"] = {"w1": ffn["w1"][:, f], "b1": ffn["b1"][f], "w2": reduce(ffn["w2"][f]), "b2": ffn["b2"]}
        return out

    out = dict(params)
    for stack in ("encoder", "decoder"):
        if stack in params:
            out[stack] = {**params[stack], "layers": [layer(lp) for lp in params[stack]["layers"]]}
    if not cfg.tied_embeddings:
        out["out"] = {"w": AllGatherMatrix(params["out"]["w"], n, rank, comm, stats), "b": params["out"]["b"]}
    return out, LocalConfig(cfg, len(heads), len(heads))


def allreduce_bytes_per_token(cfg, itemsize):
    """Payload all-reduced per decoded token by a decoder-only model: 2 · L · C · itemsize (one (1, C) row after
    each attention and each FFN)."""
    return 2 * cfg.n_layers * cfg.d_model * itemsize


def seq2seq_allreduce_bytes(cfg, source_tokens, target_tokens, itemsize):
    """Encoder: 2 all-reduces per layer per source token; decoder: 3 per layer (self, cross, FFN) per target."""
    C = cfg.d_model
    return itemsize * C * (2 * cfg.n_encoder_layers * source_tokens + 3 * cfg.n_decoder_layers * target_tokens)


# --- generation ----------------------------------------------------------------------------------------------
def run_greedy(model, new_session, prompts, max_new_tokens, eos_id=None, progress=None):
    """(tokens per prompt, next-token logits at every step (steps, B, V), the session) of greedy decoding;
    progress(1) after each step, if given (a progress bar's update)."""
    session = new_session(model, prompts)
    logits = []

    def step(i, s, t):
        logits.append(s.next_logits)
        if progress is not None:
            progress(1)

    out = greedy(session, max_new_tokens, eos_id=eos_id, on_step=step)
    return out, np.stack(logits), session


def tp_greedy(model, shard, new_session, prompts, max_new_tokens, comm, eos_id=None, check=False, progress=None):
    """Greedy decoding of ``prompts`` (lists of ids) with ``model`` split over the ranks of ``comm``:
    shard(model, n, rank, comm, stats) gives the rank's model.  Returns, on every rank, a dict: tokens, this rank's
    CommStats, seconds, the session, the head partition; with check=True rank 0 also decodes with the whole
    model and adds its tokens, its KV bytes and the largest |logit| gap over all steps.  progress(1) after each
    split step on rank 0, if given."""
    n, rank = comm.Get_size(), comm.Get_rank()
    stats = CommStats()
    local = shard(model, n, rank, comm, stats)
    comm.Barrier()
    t0 = time.perf_counter()
    tokens, logits, session = run_greedy(local, new_session, prompts, max_new_tokens, eos_id,
                                         progress if rank == 0 else None)
    seconds = time.perf_counter() - t0
    cfg = model.config
    result = dict(n=n, rank=rank, tokens=tokens, stats=stats, seconds=seconds, session=session,
                  partition=head_partition(cfg.n_heads, cfg.kv_heads, n))
    if check and rank == 0:
        ref_tokens, ref_logits, ref_session = run_greedy(model, new_session, prompts, max_new_tokens, eos_id)
        steps = min(len(ref_logits), len(logits))
        result.update(reference_tokens=ref_tokens, reference_kv_bytes=ref_session.cache_bytes(),
                      max_logit_gap=float(np.max(np.abs(ref_logits[:steps] - logits[:steps]))))
    return result
