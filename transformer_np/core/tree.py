"""Params trees — nested dicts and lists of arrays whose keys are the functions' argument names — and the
few operations on them: map a function over the leaves, flatten to {"a/b/0": leaf} and back, count scalars.
"""

from __future__ import annotations

import copy
import math

SEP = "/"


def tree_map(fn, tree):
    """Apply fn to every leaf of a nested dict / list / tuple tree, keeping its structure."""
    if isinstance(tree, dict):
        return {k: tree_map(fn, v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(tree_map(fn, v) for v in tree)
    return fn(tree)


def flatten(tree, prefix=""):
    """{"a": {"b": [x, y]}} -> {"a/b/0": x, "a/b/1": y}"""
    if isinstance(tree, dict):
        items = tree.items()
    elif isinstance(tree, (list, tuple)):
        items = ((str(i), v) for i, v in enumerate(tree))
    else:
        return {prefix: tree}
    out = {}
    for k, v in items:
        if SEP in str(k):
            raise ValueError(f"params key {k!r} must not contain {SEP!r}")
        out.update(flatten(v, f"{prefix}{SEP}{k}" if prefix else str(k)))
    return out


def unflatten(flat, template=None):
    """The inverse of flatten, shaped like template (a tree of the same structure).  Without a template the
    tree is built from the paths: dicts, and lists where every key of a level is an index 0 … n-1."""
    if template is None:
        return _nest(flat)

    def build(t, prefix):
        if isinstance(t, dict):
            return {k: build(v, f"{prefix}{SEP}{k}" if prefix else k) for k, v in t.items()}
        if isinstance(t, (list, tuple)):
            return [build(v, f"{prefix}{SEP}{i}" if prefix else str(i)) for i, v in enumerate(t)]
        return flat[prefix]

    return build(template, "")


def _nest(flat):
    levels = {}
    for path, leaf in flat.items():
        head, _, rest = path.partition(SEP)
        levels.setdefault(head, {})[rest] = leaf
    tree = {k: (sub[""] if set(sub) == {""} else _nest(sub)) for k, sub in levels.items()}
    if tree and set(tree) == {str(i) for i in range(len(tree))}:
        return [tree[str(i)] for i in range(len(tree))]
    return tree


def count_params(tree):
    """Number of scalars in every array of the tree (None leaves, such as absent biases, count 0)."""
    return sum(math.prod(a.shape) for a in flatten(tree).values() if a is not None)


def map_weights(params, fn, skip=()):
    """The params tree with every matrix w (a 2-D array or a stored weight) at path p ("decoder/layers/0/attn/w_q")
    replaced by fn(p, w), except under the top-level keys in ``skip`` (e.g. "embed"); vectors (norms, biases) and
    absent leaves (None) are kept."""
    flat = flatten(params)
    keep = lambda p, w: w is None or len(w.shape) != 2 or p.split(SEP)[0] in skip  # noqa: E731
    return unflatten({p: w if keep(p, w) else fn(p, w) for p, w in flat.items()}, params)


def replace_weights(params, make, skip=()):
    """The params tree with every matrix w replaced by make(w) (a stored weight: quantized, cast, …), except under
    the top-level keys in ``skip``."""
    return map_weights(params, lambda path, w: make(w), skip)


def params_nbytes(params):
    """Resident bytes of a params tree: float arrays and stored weights alike."""
    return sum(a.nbytes for a in flatten(params).values() if a is not None)


class HoldsParams:
    """A model that is a config and a params tree (every model class of the package)."""

    config = None
    params = None

    def with_params(self, params, config=None):
        """A shallow copy of the model holding ``params`` (and ``config`` if given): how a compressed, pruned or
        moved (another array library) variant is run without touching the original."""
        twin = copy.copy(self)
        twin.params = params
        if config is not None:
            twin.config = config
        return twin
