"""A safetensors reader in NumPy: no pickle, and nothing read before every number in the header is checked.

Layout: 8 bytes little-endian u64 N; N bytes of JSON header {name: {dtype, shape, data_offsets: [begin, end]},
"__metadata__": {...}}; then the raw buffer, offsets relative to its start.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
          "I8": "i1", "U8": "u1", "BOOL": "?"}
MAX_HEADER = 100 * 2**20  # a header larger than 100 MiB is taken as corrupt


class SafetensorsError(ValueError):
    """The file is not a valid safetensors file; the message says where and why."""


MAX_DIMS = 32


def _unique_keys(pairs):
    """json object hook: a key given twice is an error (json would silently keep the last)."""
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError(f"duplicate keys {sorted({k for k in keys if keys.count(k) > 1})[:5]}")
    return dict(pairs)


def read_header(path):
    """(header dict without __metadata__, metadata dict, data start offset, file size), all checked: every
    entry's dtype, shape and offsets, and the tensors' spans tiling the data buffer exactly (no overlap, no
    hole, no unreferenced bytes — as the format requires)."""
    size = os.path.getsize(path)
    if size < 8:
        raise SafetensorsError(f"{path}: {size} bytes, too short for the 8-byte header length")
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        if n > min(size - 8, MAX_HEADER):
            raise SafetensorsError(f"{path}: header length {n} exceeds the {size - 8} bytes after it")
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_keys)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:  # JSONDecodeError is a ValueError
        raise SafetensorsError(f"{path}: header is not valid UTF-8 JSON ({type(e).__name__}: {e})") from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"{path}: header must be a JSON object, got {type(header).__name__}")
    metadata = header.pop("__metadata__", {}) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise SafetensorsError(f"{path}: __metadata__ must be an object of strings, got {metadata!r:.80}")
    buffer_len = size - 8 - n
    spans = []
    for name, entry in header.items():
        _check_entry(path, name, entry, buffer_len)
        spans.append((*entry["data_offsets"], name))
    spans.sort()
    covered = 0
    for begin, end, name in spans:
        if begin < covered:
            raise SafetensorsError(f"{path}: tensor {name!r} overlaps the one before it")
        if begin > covered:
            raise SafetensorsError(f"{path}: bytes {covered}..{begin} of the data buffer belong to no tensor")
        covered = end
    if covered != buffer_len:
        raise SafetensorsError(f"{path}: {buffer_len - covered} bytes after the last tensor belong to no tensor")
    return header, metadata, 8 + n, size


def _check_entry(path, name, entry, buffer_len):
    where = f"{path}: tensor {name!r}"
    if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= set(entry):
        raise SafetensorsError(f"{where}: entry must have dtype, shape and data_offsets, got {entry!r:.200}")
    if not isinstance(entry["dtype"], str) or entry["dtype"] not in DTYPES:
        raise SafetensorsError(f"{where}: unknown dtype {entry['dtype']!r:.40} (known: {sorted(DTYPES)})")
    shape, offsets = entry["shape"], entry["data_offsets"]
    if (not isinstance(shape, list) or len(shape) > MAX_DIMS
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
        raise SafetensorsError(f"{where}: shape must be a list of at most {MAX_DIMS} non-negative integers, "
                               f"got {shape!r:.200}")
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)):
        raise SafetensorsError(f"{where}: data_offsets must be [begin, end], got {offsets!r:.200}")
    begin, end = offsets
    if not 0 <= begin <= end <= buffer_len:
        raise SafetensorsError(f"{where}: data_offsets {offsets} outside the {buffer_len}-byte buffer")
    itemsize = np.dtype(DTYPES[entry["dtype"]]).itemsize
    if math.prod(max(d, 1) for d in shape) * itemsize > max(buffer_len, itemsize):  # e.g. [0, 2**62]
        raise SafetensorsError(f"{where}: shape {shape} is larger than the whole data buffer")
    nbytes = math.prod(shape) * itemsize
    if end - begin != nbytes:
        raise SafetensorsError(f"{where}: shape {shape} of {entry['dtype']} needs {nbytes} bytes, "
                               f"data_offsets hold {end - begin}")


def load_safetensors(path):
    """{name: NumPy array} of every tensor in the file (BF16 widened to float32), and the metadata dict.
    Only the bytes the header names are read, one tensor at a time."""
    header, metadata, start, _ = read_header(path)
    tensors = {}
    with open(path, "rb") as f:
        for name, entry in header.items():
            begin, end = entry["data_offsets"]
            dtype = np.dtype(DTYPES[entry["dtype"]])
            f.seek(start + begin)
            a = np.fromfile(f, dtype=dtype, count=(end - begin) // dtype.itemsize).reshape(entry["shape"])
            if entry["dtype"] == "BF16":  # bfloat16 is the top half of a float32
                a = (a.astype(np.uint32) << 16).view(np.float32)
            tensors[name] = a
    return tensors, metadata
