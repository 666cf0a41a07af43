r"""Partitioning layouts over n chips, simulated in one process on real arrays (Pope et al. 2022, §3.2–3.3).

A chip's data is one entry of a Python list; :class:`Mesh` runs the four collectives on such lists and counts the
bytes each chip sends, as a ring (or, for all-to-all, a direct exchange) would send them:

    all-gather      every chip ends with the whole array          sends (n−1)/n · |whole| bytes
    reduce-scatter  chip i ends with slice i of the sum of all     sends (n−1)/n · |whole| bytes
    all-reduce      every chip ends with the whole sum              sends 2 (n−1)/n · |whole| bytes
    all-to-all      re-shards an array from one axis to another    sends (n−1)/n · |own shard| bytes

Feed-forward layer y = act(x W_in) W_out, x: (N, E) tokens × d_model, W_in: (E, F), W_out: (F, E), N = B·L:

    1D weight-stationary   W sharded over F on all n chips; x all-gathered, partial y reduce-scattered:
                           2·(n−1)/n·N·E values per chip — growing towards 2·N·E with n, never falling
    2D weight-stationary   chips a grid X × Y; W_in sharded E over X and F over Y: ≈ 2·N·E / X + 2·N·F / Y,
                           smallest at X = √(n·E/F):  ≈ 8·N·E / √n when F = 4E — falls as 1/√n
    weight-gathered        x sharded over the batch, the weights all-gathered: ≈ 2·E·F bytes, whatever N is —
                           the layout for large batches (prefill)

Multiquery attention's decode step (one K/V head shared by H query heads):

    over heads   each chip computes H/n heads and reads the whole K/V cache (it is one head: replicated)
    over batch   Q all-to-all'ed from head shards to batch shards, each chip reads only its B/n sequences'
                 cache, the output all-to-all'ed back: two small all-to-alls buy an n-fold smaller cache per chip

Every layout is tested equal to the unpartitioned layer, and its counted bytes equal to the formulas here.
"""

from __future__ import annotations

import numpy as np

from ..core.attention import scaled_dot_product_attention
from ..core.checks import check_positive_int
from ..core.nn import relu

COLLECTIVES = ("all-gather", "reduce-scatter", "all-reduce", "all-to-all")


# --- the bytes each collective sends, per chip ------------------------------------------------------------
def all_gather_bytes(whole, n):
    """(n − 1)/n · |whole|: a ring passes every other chip's shard through each chip once."""
    return (n - 1) * whole / n


def reduce_scatter_bytes(whole, n):
    """(n − 1)/n · |whole|: a ring adds one slice per step and passes it on."""
    return (n - 1) * whole / n


def all_reduce_bytes(whole, n):
    """2 (n − 1)/n · |whole|: a reduce-scatter, then an all-gather of the reduced slices."""
    return 2 * (n - 1) * whole / n


def all_to_all_bytes(shard, n):
    """(n − 1)/n · |own shard|: each chip keeps one of its n pieces and sends the others directly."""
    return (n - 1) * shard / n


class Mesh:
    """n simulated chips.  Collectives take and return one array per chip and add to ``sent[collective]`` the
    bytes one chip sends (the chips send alike when the shards are equal, as in every layout here)."""

    def __init__(self, n):
        self.n = check_positive_int("n", n)
        self.sent = dict.fromkeys(COLLECTIVES, 0.0)

    def _check(self, parts):
        if len(parts) != self.n:
            raise ValueError(f"expected one array per chip ({self.n}), got {len(parts)}")

    def all_gather(self, shards, axis):
        self._check(shards)
        whole = np.concatenate(shards, axis=axis)
        self.sent["all-gather"] += all_gather_bytes(whole.nbytes, self.n)
        return [whole.copy() for _ in range(self.n)]

    def reduce_scatter(self, partials, axis):
        self._check(partials)
        total = sum(partials[1:], partials[0].copy())
        self.sent["reduce-scatter"] += reduce_scatter_bytes(total.nbytes, self.n)
        return np.array_split(total, self.n, axis=axis)

    def all_reduce(self, partials):
        self._check(partials)
        total = sum(partials[1:], partials[0].copy())
        self.sent["all-reduce"] += all_reduce_bytes(total.nbytes, self.n)
        return [total.copy() for _ in range(self.n)]

    def all_to_all(self, shards, split_axis, concat_axis):
        """Chip i's shard is cut in n along split_axis; chip j receives piece j of every chip, concatenated along
        concat_axis (in chip order)."""
        self._check(shards)
        self.sent["all-to-all"] += all_to_all_bytes(shards[0].nbytes, self.n)
        pieces = [np.array_split(s, self.n, axis=split_axis) for s in shards]
        return [np.concatenate([pieces[i][j] for i in range(self.n)], axis=concat_axis) for j in range(self.n)]

    @property
    def total_sent(self):
        return sum(self.sent.values())


class SubMeshes:
    """The rows or columns of an X × Y grid of a Mesh's chips, each a group that runs its own collective;
    bytes are counted per chip (every group runs at once, so one group's count is each chip's)."""

    def __init__(self, mesh, X, Y):
        if X * Y != mesh.n:
            raise ValueError(f"a grid of X={X} × Y={Y} chips needs n = {X * Y}, the mesh has {mesh.n}")
        self.mesh, self.X, self.Y = mesh, X, Y

    def over(self, groups, collective, parts, *args):
        """Run ``collective`` in each group of chip indices; returns the results in chip order."""
        out = [None] * self.mesh.n
        before = dict(self.mesh.sent)
        for g in groups:
            sub = Mesh(len(g))
            for i, r in zip(g, getattr(sub, collective)([parts[i] for i in g], *args), strict=True):
                out[i] = r
            name = collective.replace("_", "-")
            self.mesh.sent[name] = before[name] + sub.sent[name]  # the groups run side by side
        return out

    def rows(self):  # chips sharing x (= i // Y): a group of Y
        return [[x * self.Y + y for y in range(self.Y)] for x in range(self.X)]

    def cols(self):  # chips sharing y: a group of X
        return [[x * self.Y + y for x in range(self.X)] for y in range(self.Y)]


# --- the feed-forward layer ----------------------------------------------------------------------------------
def ffn_reference(x, w_in, w_out, act=relu):
    r"""y = act(x W_in) W_out on one chip.  x: (N, E)  w_in: (E, F)  w_out: (F, E)."""
    return act(x @ w_in) @ w_out


def ffn_1d_weight_stationary(x_shards, w_in, w_out, mesh, act=relu):
    r"""x sharded over E (N, E/n per chip) → all-gather → (N, E); W_in[:, F_i], W_out[F_i, :] stay on chip i;
    partial y (N, E) per chip → reduce-scatter over E.  Returns y's shards (N, E/n)."""
    n = mesh.n
    w_in_s, w_out_s = np.array_split(w_in, n, axis=1), np.array_split(w_out, n, axis=0)
    x_full = mesh.all_gather(x_shards, axis=1)
    partial = [act(x_full[i] @ w_in_s[i]) @ w_out_s[i] for i in range(n)]  # (N, E), to be summed
    return mesh.reduce_scatter(partial, axis=1)


def ffn_2d_weight_stationary(x_shards, w_in, w_out, mesh, X, act=relu):
    r"""Chips an X × Y grid (chip x·Y + y).  W_in[E_x, F_y] and W_out[F_y, E_x] stay on chip (x, y).
    x sharded over E on all n chips → all-gather within each row (over y) → x[:, E_x];  x[:, E_x] W_in[E_x, F_y]
    are partial sums over x → reduce-scatter within each column (over x) → h[:, F_xy];  act;  all-gather within
    each column → h[:, F_y];  h W_out[F_y, E_x] partial over y → reduce-scatter within each row → y[:, E_xy].
    Returns y's shards in the layout x came in (E split n ways, row-major)."""
    Y = mesh.n // X
    grid = SubMeshes(mesh, X, Y)
    E_x = np.array_split(np.arange(w_in.shape[0]), X)
    F_y = np.array_split(np.arange(w_in.shape[1]), Y)
    chips = [(i // Y, i % Y) for i in range(mesh.n)]
    x_ex = grid.over(grid.rows(), "all_gather", x_shards, 1)  # chip (x, y): x[:, E_x]
    partial = [x_ex[i] @ w_in[np.ix_(E_x[cx], F_y[cy])] for i, (cx, cy) in enumerate(chips)]  # (N, F_y)
    h = grid.over(grid.cols(), "reduce_scatter", partial, 1)  # chip (x, y): h[:, F_y][:, part x]
    h = [act(a) for a in h]
    h_fy = grid.over(grid.cols(), "all_gather", h, 1)  # (N, F_y)
    out = [h_fy[i] @ w_out[np.ix_(F_y[cy], E_x[cx])] for i, (cx, cy) in enumerate(chips)]  # (N, E_x), partial
    return grid.over(grid.rows(), "reduce_scatter", out, 1)


def split_2d_input(x, X, Y):
    """x (N, E) into the 2D layout's input shards: E split X ways, each part split Y ways, chip x·Y + y."""
    return [p for part in np.array_split(x, X, axis=1) for p in np.array_split(part, Y, axis=1)]


def ffn_weight_gathered(x_shards, w_in, w_out, mesh, act=relu):
    r"""x sharded over tokens (N/n, E per chip); each chip stores W_in[:, F_i] and W_out[F_i, :] and all-gathers
    the rest before its product.  Returns y's token shards (N/n, E)."""
    n = mesh.n
    w_in_full = mesh.all_gather(np.array_split(w_in, n, axis=1), axis=1)
    w_out_full = mesh.all_gather(np.array_split(w_out, n, axis=0), axis=0)
    return [act(x_shards[i] @ w_in_full[i]) @ w_out_full[i] for i in range(n)]


def ffn_bytes(layout, tokens, d_model, d_ff, n, X=None, itemsize=4):
    r"""Bytes one chip sends in each layout, from the formulas:
    1d: 2 · (n−1)/n · N·E;  2d: 2 · (Y−1)/Y · N·E/X + 2 · (X−1)/X · N·F/Y;  gathered: 2 · (n−1)/n · E·F."""
    N, E, F = tokens, d_model, d_ff
    if layout == "1d":
        return itemsize * (all_gather_bytes(N * E, n) + reduce_scatter_bytes(N * E, n))
    if layout == "2d":
        Y = n // X
        return itemsize * (2 * all_gather_bytes(N * E / X, Y) + 2 * reduce_scatter_bytes(N * F / Y, X))
    if layout == "gathered":
        return itemsize * 2 * all_gather_bytes(E * F, n)
    raise ValueError(f"layout must be one of '1d', '2d', 'gathered', got {layout!r}")


def best_2d_split(n, d_model, d_ff):
    """The X (a divisor of n) that makes the 2D layout send the least: near √(n·E/F)."""
    return min((X for X in range(1, n + 1) if n % X == 0),
               key=lambda X: ffn_bytes("2d", 1, d_model, d_ff, n, X))


def ffn_comm_time(layout, tokens, d_model, d_ff, n, hardware, itemsize=2):
    """Seconds one feed-forward layer spends in collectives: the bytes one chip sends / its interconnect
    bandwidth (no overlap with compute, no latency term).  The 2D layout takes its best X."""
    X = best_2d_split(n, d_model, d_ff) if layout == "2d" else None
    return ffn_bytes(layout, tokens, d_model, d_ff, n, X, itemsize) / hardware.interconnect


# --- multiquery attention, one decode step -------------------------------------------------------------------
def mqa_reference(q, k_cache, v_cache):
    """q: (B, H, 1, D) this step's queries; k_cache, v_cache: (B, 1, S, D), the one shared K/V head."""
    return scaled_dot_product_attention(q, k_cache, v_cache)[0]


def mqa_sharded_over_heads(q, k_cache, v_cache, mesh):
    """Chip i computes heads H_i with the whole (replicated) cache.  Returns (out shards (B, H/n, 1, D),
    cache bytes each chip reads)."""
    qs = np.array_split(q, mesh.n, axis=1)
    return [mqa_reference(qi, k_cache, v_cache) for qi in qs], k_cache.nbytes + v_cache.nbytes


def mqa_sharded_over_batch(q, k_cache, v_cache, mesh):
    """q arrives sharded over heads (as its projection leaves it); an all-to-all makes it batch-sharded, chip i
    attends with its own sequences' cache (B/n of it), and a second all-to-all returns the output to head
    shards.  Returns (out shards (B, H/n, 1, D), cache bytes each chip reads)."""
    n = mesh.n
    q_by_batch = mesh.all_to_all(np.array_split(q, n, axis=1), split_axis=0, concat_axis=1)  # (B/n, H, 1, D)
    ks, vs = np.array_split(k_cache, n, axis=0), np.array_split(v_cache, n, axis=0)
    out = [mqa_reference(q_by_batch[i], ks[i], vs[i]) for i in range(n)]
    read = max(ks[i].nbytes + vs[i].nbytes for i in range(n))
    return mesh.all_to_all(out, split_axis=1, concat_axis=0), read


def mqa_batch_bytes(batch, n_heads, d_head, n, itemsize):
    """Bytes one chip sends in the batch-sharded step: two all-to-alls of a (B, H/n, 1, D) shard."""
    return 2 * all_to_all_bytes(batch * n_heads * d_head * itemsize / n, n)

