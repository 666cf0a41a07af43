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


def read_header(path):
    """(header dict without __metadata__, metadata dict, data start offset, file size), all checked."""
    size = os.path.getsize(path)
    if size < 8:
        raise SafetensorsError(f"{path}: {size} bytes, too short for the 8-byte header length")
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        if n > min(size - 8, MAX_HEADER):
            raise SafetensorsError(f"{path}: header length {n} exceeds the {size - 8} bytes after it")
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SafetensorsError(f"{path}: header is not valid UTF-8 JSON ({e})") from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"{path}: header must be a JSON object, got {type(header).__name__}")
    metadata = header.pop("__metadata__", {}) or {}
    buffer_len = size - 8 - n
    spans = []
    for name, entry in header.items():
        _check_entry(path, name, entry, buffer_len)
        spans.append((*entry["data_offsets"], name))
    spans.sort()
    for (_, end, a), (begin, _, b) in zip(spans, spans[1:]):
        if begin < end:
            raise SafetensorsError(f"{path}: tensors {a!r} and {b!r} overlap")
    return header, metadata, 8 + n, size


def _check_entry(path, name, entry, buffer_len):
    where = f"{path}: tensor {name!r}"
    if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= set(entry):
        raise SafetensorsError(f"{where}: entry must have dtype, shape and data_offsets, got {entry!r}")
    if entry["dtype"] not in DTYPES:
        raise SafetensorsError(f"{where}: unknown dtype {entry['dtype']!r} (known: {sorted(DTYPES)})")
    shape, offsets = entry["shape"], entry["data_offsets"]
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in shape):
        raise SafetensorsError(f"{where}: shape must be a list of non-negative integers, got {shape!r}")
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)):
        raise SafetensorsError(f"{where}: data_offsets must be [begin, end], got {offsets!r}")
    begin, end = offsets
    if not 0 <= begin <= end <= buffer_len:
        raise SafetensorsError(f"{where}: data_offsets {offsets} outside the {buffer_len}-byte buffer")
    nbytes = math.prod(shape) * np.dtype(DTYPES[entry["dtype"]]).itemsize
    if end - begin != nbytes:
        raise SafetensorsError(f"{where}: shape {shape} of {entry['dtype']} needs {nbytes} bytes, "
                               f"data_offsets hold {end - begin}")


def load_safetensors(path):
    """{name: NumPy array} of every tensor in the file (BF16 widened to float32), and the metadata dict."""
    header, metadata, start, _ = read_header(path)
    with open(path, "rb") as f:
        data = f.read()
    tensors = {}
    for name, entry in header.items():
        begin, end = entry["data_offsets"]
        dtype = np.dtype(DTYPES[entry["dtype"]])
        a = np.frombuffer(data, dtype=dtype, count=(end - begin) // dtype.itemsize, offset=start + begin)
        a = a.reshape(entry["shape"])
        if entry["dtype"] == "BF16":  # bfloat16 is the top half of a float32
            a = (a.astype(np.uint32) << 16).view(np.float32)
        tensors[name] = a
    return tensors, metadata
