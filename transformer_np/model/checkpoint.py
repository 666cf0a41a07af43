"""Checkpoints: a config and a params tree (any backend) in one .npz — no pickle, written atomically, and every
array checked against the shapes the config implies when read back.  Extra arrays (optimiser state, training
history, test metrics) travel in the same file under ``__config__extra/NAME`` and are read by :func:`read_extras`.
"""

from __future__ import annotations

import json
import os
import tempfile

import numpy as np

from ..core.backend import to_numpy
from ..core.tree import SEP, flatten, unflatten
from .config import TransformerConfig
from .params import param_shapes

CONFIG_KEY = "__config__"
EXTRA = f"{CONFIG_KEY}extra{SEP}"


def atomic_write(path, write, mode="wb"):
    """Call write(f) on a temp file in path's folder, flush and fsync it, then rename it over path: a reader
    sees the old file or the new one, never half of one."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.splitext(path)[1], dir=folder)
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a checkpoint is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_checkpoint(path, params, cfg, extra=None):
    """Write params (any backend), the config and optional extra arrays to one .npz, atomically."""
    arrays = {k: to_numpy(v) for k, v in flatten(params).items()}
    for k, v in (extra or {}).items():
        arrays[f"{EXTRA}{k}"] = np.asarray(v)
    arrays[CONFIG_KEY] = np.array(cfg.to_json())
    atomic_write(path, lambda f: np.savez(f, **arrays))


def write_json(data, path):
    """Write data as indented JSON, atomically."""
    atomic_write(path, lambda f: json.dump(data, f, indent=2), mode="w")


def _read_arrays(path):
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise
    except Exception as e:  # zipfile.BadZipFile, EOFError, ValueError... from a truncated or corrupt file
        raise ValueError(f"{path}: not a readable transformer_np checkpoint ({type(e).__name__}: {e})") from e


def read_extras(path):
    """{name: array} of the extra arrays saved with ``save_checkpoint(..., extra=...)``."""
    return {k.removeprefix(EXTRA): v for k, v in _read_arrays(path).items() if k.startswith(EXTRA)}


def load_checkpoint(path, cfg=None):
    """(params, cfg) from a .npz written by save_checkpoint.  If cfg is given the file must match it.
    Every array is checked against the shapes the config implies."""
    arrays = _read_arrays(path)
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
