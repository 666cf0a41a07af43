"""``bench embed``: MiniLM sentence embeddings per second, in NumPy and in sentence-transformers on torch."""

from __future__ import annotations

import time

import numpy as np

from ...pretrained.minilm import default_path
from ...pretrained.registry import load
from ...pretrained.sentences import SEARCH_SENTENCES
from .table import Column, print_table

COLUMNS = [Column("library", "library", 34, align="<"), Column("seconds", "seconds", 8, ".2f"),
           Column("sentences/s", "per_s", 12, ".0f")]


def bench_embed(n=1000, batch_size=32, path=None, print_fn=print):
    """Sentences per second for n sentences, in NumPy and (if installed) in sentence-transformers on torch."""
    rng = np.random.default_rng(0)
    words = " ".join(SEARCH_SENTENCES).replace(".", "").split()
    texts = [" ".join(rng.choice(words, size=int(rng.integers(5, 30)))) for _ in range(n)]
    model = load(path or "minilm")
    model.encode(texts[:batch_size])  # warm-up
    t0 = time.perf_counter()
    mine = model.encode(texts, batch_size=batch_size)
    numpy_s = time.perf_counter() - t0
    result = {"sentences": n, "batch_size": batch_size, "numpy_s": numpy_s, "numpy_per_s": n / numpy_s}
    rows = [dict(library="transformer_np (NumPy)", seconds=numpy_s, per_s=n / numpy_s)]
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        print_table(rows, COLUMNS, print_fn)
        print_fn("sentence-transformers is not installed: no torch comparison in this run")
        return result
    st_model = SentenceTransformer(str(path or default_path()), device="cpu")
    st_model.encode(texts[:batch_size], batch_size=batch_size)
    t0 = time.perf_counter()
    theirs = st_model.encode(texts, batch_size=batch_size, convert_to_numpy=True)
    st_s = time.perf_counter() - t0
    result.update(torch_s=st_s, torch_per_s=n / st_s, max_abs_diff=float(np.abs(mine - theirs).max()))
    rows.append(dict(library="sentence-transformers (torch CPU)", seconds=st_s, per_s=n / st_s))
    print_table(rows, COLUMNS, print_fn)
    print_fn(f"{n} sentences, batches of {batch_size}: NumPy / torch time {numpy_s / st_s:.2f}x; "
             f"max |difference| {result['max_abs_diff']:.1e}")
    return result
