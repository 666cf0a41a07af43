"""Checkpoints: a config and a params tree (any backend) in one .npz — no pickle, written atomically, and every
array checked against the shapes the config implies when read back.  Extra arrays (optimiser state, training
history, test metrics) travel in the same file under ``__config__extra/NAME`` and are read by :func:`read_extras`.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import tempfile
import zipfile
import zlib

import numpy as np

from ..core.backend import to_numpy
from ..core.tree import SEP, flatten, unflatten
from .config import TransformerConfig
from .params import param_shapes

CONFIG_KEY = "__config__"
EXTRA = f"{CONFIG_KEY}extra{SEP}"


def atomic_write(path, write, mode="wb"):
    """Call write(f) on a temp file beside path, flush and fsync it, then rename it over path: a reader sees the
    old file or the new one, never half of one.  A symlink is written through to its target.  The temp file is
    ``.NAME.tmp-PID-…``; temp files of earlier writes to the same path whose process is gone (killed midway) are
    removed first, and those of a process still writing are left to it."""
    path = os.path.realpath(path)
    folder, name = os.path.split(path)
    prefix = f".{name}.tmp-"
    for stale in glob.glob(os.path.join(glob.escape(folder), glob.escape(prefix) + "*")):
        if not _writer_alive(stale[len(os.path.join(folder, prefix)):]):
            with contextlib.suppress(FileNotFoundError):  # its writer may have just renamed it
                os.unlink(stale)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f"{prefix}{os.getpid()}-", dir=folder)
    except OSError as e:  # the error names the user's path, not a temp file's
        raise OSError(e.errno, f"{path}: cannot be written ({e.strerror})") from None
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a checkpoint is an ordinary file
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno is not None:  # a full disk, a file too large: say which file
            raise OSError(e.errno, f"{path}: could not be written ({e.strerror})") from None
        raise


def _writer_alive(tail):
    """Whether the process named by a temp file's "PID-…" tail is still running (False for a name without one)."""
    pid = tail.split("-", 1)[0]
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # another user's process, or a number no pid can be: leave it
    return True


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


MAX_CONFIG_CHARS = 100_000


def open_npz(path):
    """(open ZipFile, {member name: (shape, dtype, ZipInfo)}) of an .npz, from each member's .npy header only:
    nothing is decompressed beyond the headers, so a huge or hostile member is refused before it is read."""
    try:
        zf = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise ValueError(f"{path}: not a readable transformer_np checkpoint ({type(e).__name__}: {e})") from e
    members = {}
    try:
        for info in zf.infolist():
            name = info.filename.removesuffix(".npy")
            if not info.filename.endswith(".npy") or name in members:
                raise ValueError(f"member {info.filename!r} is not one .npy array")
            with zf.open(info) as f:
                version = np.lib.format.read_magic(f)
                read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
                if version not in read:
                    raise ValueError(f"member {info.filename!r} has .npy version {version}")
                shape, _, dtype = read[version](f)
            if dtype.hasobject:
                raise ValueError(f"member {info.filename!r} holds Python objects (a pickle): refused")
            members[name] = (shape, dtype, info)
    except Exception as e:
        zf.close()
        if isinstance(e, ValueError) and str(e).startswith("member"):
            raise ValueError(f"{path}: {e}") from None
        raise ValueError(f"{path}: not a readable transformer_np checkpoint ({type(e).__name__}: {e})") from e
    return zf, members


def read_npz_member(zf, members, name):
    """One member of an .npz opened by :func:`open_npz`, without pickle; a damaged member is a ValueError."""
    try:
        with zf.open(members[name][2]) as f:
            return np.lib.format.read_array(f, allow_pickle=False)
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError) as e:  # a damaged member (bad CRC…)
        raise ValueError(f"{zf.filename}: member {name!r} is not readable ({type(e).__name__}: {e})") from e


def read_extras(path):
    """{name: array} of the extra arrays saved with ``save_checkpoint(..., extra=...)``."""
    zf, members = open_npz(path)
    with zf:
        return {k.removeprefix(EXTRA): read_npz_member(zf, members, k) for k in members if k.startswith(EXTRA)}


def load_checkpoint(path, cfg=None):
    """(params, cfg) from a .npz written by save_checkpoint.  If cfg is given the file must match it.
    Every member's name, shape and dtype is checked against the config before any data is read."""
    zf, members = open_npz(path)
    with zf:
        if CONFIG_KEY not in members:
            raise ValueError(f"{path}: no embedded config ({CONFIG_KEY!r}); not a transformer_np checkpoint")
        shape, dtype, _ = members[CONFIG_KEY]
        if shape != () or dtype.kind != "U" or dtype.itemsize > 4 * MAX_CONFIG_CHARS:
            raise ValueError(f"{path}: {CONFIG_KEY} must be one string, got shape {shape} of {dtype}")
        saved = TransformerConfig.from_json(str(read_npz_member(zf, members, CONFIG_KEY)))
        if cfg is not None and cfg != saved:
            diff = {k: (getattr(saved, k), getattr(cfg, k)) for k in saved.__dataclass_fields__
                    if getattr(saved, k) != getattr(cfg, k)}
            raise ValueError(f"{path}: checkpoint config differs from the expected one (saved, expected): {diff}")
        expected = flatten(param_shapes(saved))
        got = {k for k in members if not k.startswith(CONFIG_KEY)}
        missing, unexpected = sorted(set(expected) - got), sorted(got - set(expected))
        if missing or unexpected:
            raise ValueError(
                f"{path}: parameters do not match the config: missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
        for k, leaf in expected.items():
            shape, dtype, _ = members[k]
            if shape != leaf.shape:
                raise ValueError(f"{path}: parameter {k} has shape {shape}, config implies {leaf.shape}")
            if dtype != np.dtype(saved.dtype):
                raise ValueError(f"{path}: parameter {k} has dtype {dtype}, config says {saved.dtype}")
        arrays = {k: read_npz_member(zf, members, k) for k in expected}
    return unflatten(arrays, param_shapes(saved)), saved
