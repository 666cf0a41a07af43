"""Params trees: counting, flattening, and .npz checkpoints (no pickle, atomic writes)."""

from __future__ import annotations

import math
import os
import tempfile

import numpy as np

from .backend import to_numpy
from .config import TransformerConfig

CONFIG_KEY = "__config__"
SEP = "/"


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


def unflatten(flat, template):
    """The inverse of flatten, shaped like template (a tree of the same structure)."""

    def build(t, prefix):
        if isinstance(t, dict):
            return {k: build(v, f"{prefix}{SEP}{k}" if prefix else k) for k, v in t.items()}
        if isinstance(t, (list, tuple)):
            return [build(v, f"{prefix}{SEP}{i}" if prefix else str(i)) for i, v in enumerate(t)]
        return flat[prefix]

    return build(template, "")


def count_params(tree):
    """Number of scalars in every array of the tree."""
    return sum(math.prod(a.shape) for a in flatten(tree).values())


def save_checkpoint(path, params, cfg, extra=None):
    """Write params (any backend), the config and optional extra arrays to one .npz, atomically:
    a temp file in the same folder, flushed and fsynced, then renamed over path."""
    arrays = {k: to_numpy(v) for k, v in flatten(params).items()}
    for k, v in (extra or {}).items():
        arrays[f"{CONFIG_KEY}extra{SEP}{k}"] = np.asarray(v)
    arrays[CONFIG_KEY] = np.array(cfg.to_json())
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a checkpoint is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(data, path):
    """Write data as JSON atomically (a temp file beside it, then renamed over path)."""
    import json

    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)


def load_checkpoint(path, cfg=None):
    """(params, cfg) from a .npz written by save_checkpoint.  If cfg is given the file must match it.
    Every array is checked against the shapes the config implies."""
    from .model import param_shapes

    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise
    except Exception as e:  # zipfile.BadZipFile, EOFError, ValueError... from a truncated or corrupt file
        raise ValueError(f"{path}: not a readable transformer_np checkpoint ({type(e).__name__}: {e})") from e
    if CONFIG_KEY not in arrays:
        raise ValueError(f"{path}: no embedded config ({CONFIG_KEY!r}); not a transformer_np checkpoint")
    saved = TransformerConfig.from_json(str(arrays.pop(CONFIG_KEY)))
    if cfg is not None and cfg != saved:
        diff = {k: (getattr(saved, k), getattr(cfg, k)) for k in saved.__dataclass_fields__
                if getattr(saved, k) != getattr(cfg, k)}
        raise ValueError(f"{path}: checkpoint config differs from the expected one (saved, expected): {diff}")
    expected = flatten(param_shapes(saved))
    got = {k: v for k, v in arrays.items() if not k.startswith(CONFIG_KEY)}
    missing, unexpected = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"{path}: parameters do not match the config: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    for k, leaf in expected.items():
        if got[k].shape != leaf.shape:
            raise ValueError(f"{path}: parameter {k} has shape {tuple(got[k].shape)}, config implies {leaf.shape}")
        if got[k].dtype != np.dtype(saved.dtype):
            raise ValueError(f"{path}: parameter {k} has dtype {got[k].dtype}, config says {saved.dtype}")
    return unflatten(got, param_shapes(saved)), saved
