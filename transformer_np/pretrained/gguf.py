r"""A GGUF reader in NumPy: llama.cpp's single-file format for a model's weights, tokenizer and settings.

Memory-mapped, and nothing is read before every number that says where it lies has been checked: counts and
lengths against the bytes left in the file, types against the known ones, each tensor's span against the data
section (aligned, inside the file, no overlap).  A malformed file raises :class:`GGUFError` naming the field.

Layout (little-endian, version 2 or 3)::

    "GGUF" | u32 version | u64 n_tensors | u64 n_kv
    n_kv × (string key | u32 value type | value)           metadata: numbers, bools, strings, arrays
    n_tensors × (string name | u32 n_dims | u64 dims[n_dims] | u32 ggml type | u64 offset)
    padding to ``general.alignment`` (default 32)
    tensor data, each tensor at data start + offset (a multiple of the alignment)

A string is u64 length + UTF-8 bytes; an array is u32 item type + u64 count + items.  **GGUF lists a tensor's
dimensions innermost first** (ne[0] is the contiguous one, as in ggml): a linear weight of dims [C_in, C_out]
is the NumPy array (C_out, C_in) — :attr:`TensorInfo.shape` is already turned around, in NumPy's order.

Quantized tensors come in blocks (of 32 values, or super-blocks of 256): core.ggml_formats draws each format and
turns it into float32 (:func:`dequantize`), or keeps a matrix as its blocks (:class:`GGUFMatrix`).
"""

from __future__ import annotations

import dataclasses
import math
import mmap
import os
import struct

import numpy as np

from ..core.ggml_formats import (  # noqa: F401 - the block formats, read here and offered by this module too
    BLOCK_TYPES,
    GGML_TYPES,
    QUANT_SIZES,
    GGUFError,
    GGUFMatrix,
    dequantize,
)

MAGIC = b"GGUF"
VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4  # ggml's GGML_MAX_DIMS
MAX_STRING = 1 << 24  # 16 MiB: a longer key, token or template is taken as corrupt
MAX_ARRAY_DEPTH = 2

# metadata value types: code -> (name, NumPy dtype of a scalar, or None for string / array)
VALUE_TYPES = {0: ("UINT8", "<u1"), 1: ("INT8", "<i1"), 2: ("UINT16", "<u2"), 3: ("INT16", "<i2"),
               4: ("UINT32", "<u4"), 5: ("INT32", "<i4"), 6: ("FLOAT32", "<f4"), 7: ("BOOL", "<u1"),
               8: ("STRING", None), 9: ("ARRAY", None), 10: ("UINT64", "<u8"), 11: ("INT64", "<i8"),
               12: ("FLOAT64", "<f8")}

@dataclasses.dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple  # NumPy order: GGUF's dims reversed
    type: str  # ggml type name, e.g. "Q4_1"
    offset: int  # absolute offset of the first byte in the file
    nbytes: int


@dataclasses.dataclass
class GGUFFile:
    """A parsed GGUF file: its metadata (a dict of Python values), its tensors' infos, and the memory map."""

    path: str
    version: int
    metadata: dict
    tensors: dict  # name -> TensorInfo, in file order
    alignment: int
    data_offset: int
    _map: np.ndarray = dataclasses.field(repr=False)
    _mmap: mmap.mmap | None = dataclasses.field(default=None, repr=False)  # what _map views, to hand pages back

    def raw(self, name):
        """The bytes of tensor ``name`` as a read-only uint8 view of the memory map (nothing copied)."""
        info = self.tensors[name]
        return self._map[info.offset: info.offset + info.nbytes]

    def tensor(self, name, rows=None):
        """Tensor ``name`` as a float32 NumPy array of shape ``TensorInfo.shape``, dequantized if need be; or only
        its rows ``rows`` (a slice) — each row of ne0 values is its own run of blocks."""
        info = self.tensors[name]
        if rows is None:
            return dequantize(self.raw(name), info.type, name).reshape(info.shape)
        raw = self.raw(name).reshape(info.shape[0], -1)[rows]
        return dequantize(raw.reshape(-1), info.type, name).reshape(raw.shape[0], *info.shape[1:])

    def release(self, name):
        """Hand the memory pages of tensor ``name`` back to the system (a later read faults them in again from
        the file): a loader that has converted a tensor keeps no second copy resident."""
        info = self.tensors[name]
        if self._mmap is None or getattr(mmap, "MADV_DONTNEED", None) is None:
            return  # not a map of the file, or a system without madvise (Windows): nothing to hand back
        start = info.offset // mmap.PAGESIZE * mmap.PAGESIZE  # info.offset counts from the file's first byte
        self._mmap.madvise(mmap.MADV_DONTNEED, start, info.offset + info.nbytes - start)


class _Cursor:
    """Reads little-endian values from the memory map, checking each length against the bytes left."""

    def __init__(self, path, data):
        self.path, self.data, self.pos = path, data, 0

    def fail(self, what):
        raise GGUFError(f"{self.path}: {what} (at byte {self.pos})")

    def take(self, n, what):
        if n < 0 or n > len(self.data) - self.pos:
            self.fail(f"{what} needs {n} bytes, {len(self.data) - self.pos} are left")
        out = self.data[self.pos: self.pos + n]
        self.pos += n
        return out

    def scalar(self, dtype, what):
        dtype = np.dtype(dtype)
        return self.take(dtype.itemsize, what).view(dtype)[0].item()

    def string(self, what):
        n = self.scalar("<u8", f"{what} length")
        if n > MAX_STRING:
            self.fail(f"{what} claims {n} bytes, more than the {MAX_STRING} allowed")
        try:
            return bytes(self.take(n, what)).decode("utf-8")
        except UnicodeDecodeError as e:
            self.fail(f"{what} is not UTF-8 ({e})")

    def strings(self, count, what):
        """``count`` strings one after another (an array's): the checks of :meth:`string`, in one tight loop over
        the map (a million empty strings: 1.0 s, against 5.3 s through string())."""
        mv, end, pos = memoryview(self.data), len(self.data), self.pos
        length = struct.Struct("<Q").unpack_from
        out = []
        try:
            for i in range(count):
                if end - pos < 8:
                    self.pos = pos
                    self.fail(f"{what}[{i}] length needs 8 bytes, {end - pos} are left")
                (n,) = length(mv, pos)
                pos += 8
                if n > MAX_STRING or n > end - pos:
                    self.pos = pos
                    self.fail(f"{what}[{i}] claims {n} bytes, " + (f"more than the {MAX_STRING} allowed"
                                                                  if n > MAX_STRING else f"{end - pos} are left"))
                out.append(str(mv[pos: pos + n], "utf-8"))
                pos += n
        except UnicodeDecodeError as e:
            self.pos = pos
            self.fail(f"{what}[{len(out)}] is not UTF-8 ({e})")
        self.pos = pos
        return out

    def value(self, vtype, what, depth=0):
        if vtype not in VALUE_TYPES:
            self.fail(f"{what} has unknown value type {vtype}")
        name, dtype = VALUE_TYPES[vtype]
        if name == "STRING":
            return self.string(what)
        if name == "ARRAY":
            if depth >= MAX_ARRAY_DEPTH:
                self.fail(f"{what} nests arrays deeper than {MAX_ARRAY_DEPTH}")
            item = self.scalar("<u4", f"{what} item type")
            count = self.scalar("<u8", f"{what} count")
            smallest = np.dtype(VALUE_TYPES[item][1]).itemsize if VALUE_TYPES.get(item, (0, None))[1] else 8
            if count * smallest > len(self.data) - self.pos:
                self.fail(f"{what} claims {count} items, more than the bytes left hold")
            if VALUE_TYPES.get(item, (None, None))[1] is not None:  # numbers: a read-only view of the map, so a
                dt = np.dtype(VALUE_TYPES[item][1])                 # 20M-entry array costs no memory (#34)
                out = self.take(count * dt.itemsize, what).view(dt)
                return out != 0 if VALUE_TYPES[item][0] == "BOOL" else out
            if VALUE_TYPES.get(item, (None,))[0] == "STRING":
                return self.strings(count, what)
            return [self.value(item, f"{what}[{i}]", depth + 1) for i in range(count)]
        v = self.scalar(dtype, what)
        return bool(v) if name == "BOOL" else v


def read_gguf(path):
    """Parse a GGUF file (header, metadata, tensor infos), checking every count, type and offset.
    Returns a :class:`GGUFFile` whose tensors are read on demand from the memory map."""
    path = os.fspath(path)
    size = os.path.getsize(path)
    if size < 24:
        raise GGUFError(f"{path}: {size} bytes, too short for a GGUF header")
    with open(path, "rb") as f:  # the map outlives the file object (mmap keeps its own descriptor)
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    data = np.frombuffer(mapped, dtype=np.uint8)
    c = _Cursor(path, data)
    if bytes(c.take(4, "magic")) != MAGIC:
        raise GGUFError(f"{path}: not a GGUF file (magic {bytes(data[:4])!r}, expected {MAGIC!r})")
    version = c.scalar("<u4", "version")
    if version not in VERSIONS:
        c.fail(f"version {version} is not supported (only {VERSIONS})")
    n_tensors, n_kv = c.scalar("<u8", "tensor count"), c.scalar("<u8", "metadata count")
    if n_kv * 13 + n_tensors * 32 > size - c.pos:  # the smallest possible entries
        c.fail(f"{n_kv} metadata entries and {n_tensors} tensors cannot fit in {size} bytes")
    metadata = {}
    for i in range(n_kv):
        key = c.string(f"metadata key {i}")
        if key in metadata:
            c.fail(f"metadata key {key!r} appears twice")
        metadata[key] = c.value(c.scalar("<u4", f"type of {key!r}"), f"metadata {key!r}")
    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or isinstance(alignment, bool) or alignment < 1 or alignment & (alignment - 1):
        c.fail(f"general.alignment must be a power of two, got {alignment!r}")
    infos = []
    for i in range(n_tensors):
        name = c.string(f"tensor name {i}")
        n_dims = c.scalar("<u4", f"dimension count of {name!r}")
        if not 1 <= n_dims <= MAX_DIMS:
            c.fail(f"tensor {name!r} has {n_dims} dimensions (1 to {MAX_DIMS} allowed)")
        dims = [c.scalar("<u8", f"dimension {d} of {name!r}") for d in range(n_dims)]
        ggml_type = c.scalar("<u4", f"type of {name!r}")
        offset = c.scalar("<u8", f"offset of {name!r}")
        infos.append((name, dims, ggml_type, offset))
    data_offset = -(-c.pos // alignment) * alignment
    tensors = {}
    for name, dims, ggml_type, offset in infos:
        tensors[name] = _tensor_info(c, name, dims, ggml_type, offset, alignment, data_offset, size)
    if len(tensors) != len(infos):
        c.fail("two tensors share a name")
    spans = sorted((t.offset, t.offset + t.nbytes, t.name) for t in tensors.values())
    for (_, end, a), (begin, _, b) in zip(spans, spans[1:]):
        if begin < end:
            c.fail(f"tensors {a!r} and {b!r} overlap")
    return GGUFFile(path, version, metadata, tensors, alignment, data_offset, data, mapped)


def _tensor_info(c, name, dims, ggml_type, offset, alignment, data_offset, size):
    if ggml_type not in GGML_TYPES:
        c.fail(f"tensor {name!r} has unknown ggml type {ggml_type}")
    type_name, block, block_bytes = GGML_TYPES[ggml_type]
    if not all(1 <= d < 2**40 for d in dims):
        c.fail(f"tensor {name!r} has dimensions {dims} (each must lie in [1, 2**40))")
    n = math.prod(dims)
    if dims[0] % block:
        c.fail(f"tensor {name!r} of type {type_name} needs its innermost dimension {dims[0]} to be a multiple "
               f"of the block size {block}")
    nbytes = n // block * block_bytes
    if offset % alignment:
        c.fail(f"tensor {name!r} offset {offset} is not a multiple of the alignment {alignment}")
    if data_offset + offset + nbytes > size:
        c.fail(f"tensor {name!r} ({type_name}, dims {dims}: {nbytes} bytes at data offset {offset}) runs past "
               f"the end of the {size}-byte file")
    return TensorInfo(name, tuple(reversed(dims)), type_name, data_offset + offset, nbytes)
