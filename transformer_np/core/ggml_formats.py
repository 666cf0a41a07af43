r"""GGML's block formats — how GGUF files store quantized tensors — each drawn, dequantized and (the 32-value
formats) quantized, bit for bit as ggml and the ``gguf`` package do (tests/test_ggml_formats.py).

A row of a tensor is cut into blocks; each block holds its scale(s) as float16 and its values as small unsigned
integers q.  Two families:

    32 values a block     Q8_0   x = d·q,  q int8                         34 bytes   8.5 bits a weight
                          Q4_0   x = d·(q − 8),  q 4-bit                  18 bytes   4.5
                          Q4_1   x = d·q + m,    q 4-bit                  20 bytes   5.0
                          Q5_0   x = d·(q − 16), q 5-bit                  22 bytes   5.5
                          Q5_1   x = d·q + m,    q 5-bit                  24 bytes   6.0
    256 values a block    Q2_K   16 sub-blocks of 16: x = d·s_j·q − dmin·m_j, s_j, m_j 4-bit, q 2-bit    2.625
    (a super-block)       Q3_K   16 sub-blocks of 16: x = d·(s_j − 32)·q', s_j 6-bit, q' = q − 4 or q    3.4375
                          Q4_K   8 sub-blocks of 32:  x = d·s_j·q − dmin·m_j, s_j, m_j 6-bit, q 4-bit    4.5
                          Q5_K   8 sub-blocks of 32:  the same with q 5-bit                              5.5
                          Q6_K   16 sub-blocks of 16: x = d·s_j·(q − 32), s_j int8, q 6-bit              6.5625

The K-quants ("k" for the super-block) quantize the scales themselves: one float16 d (and dmin) per 256 values,
and per sub-block a 4- or 6-bit integer multiple of it — the scale costs 0.1–0.4 bits a weight instead of 0.5.
This is what almost every downloaded GGUF file uses (Q4_K_M: Q4_K for most matrices, Q6_K for some).

Dequantizers use standard array operations only, so a tensor's blocks dequantize where they lie (NumPy's memory
map, torch, CuPy).  Quantizers are NumPy (they write files): ggml's reference rounding, d computed in float32 and
stored as float16, q from the float32 d — so the bytes equal ``gguf.quants.quantize``'s.
"""

from __future__ import annotations

import numpy as np
from array_api_compat import is_array_api_obj

from . import tiled
from .backend import array_namespace, is_numpy_namespace
from .weights import StoredWeight, float32_of, from_codes

# ggml tensor types: code -> (name, values per block, bytes per block)
GGML_TYPES = {0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20), 6: ("Q5_0", 32, 22),
              7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 36), 10: ("Q2_K", 256, 84),
              11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144), 13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210),
              15: ("Q8_K", 256, 292), 24: ("I8", 1, 1), 25: ("I16", 1, 2), 26: ("I32", 1, 4), 27: ("I64", 1, 8),
              28: ("F64", 1, 8), 30: ("BF16", 1, 2)}
# the same table by name, as gguf-py's GGML_QUANT_SIZES: type name -> (values per block, bytes per block)
QUANT_SIZES = {name: (block, nbytes) for name, block, nbytes in GGML_TYPES.values()}
PLAIN = {"F32": "<f4", "F16": "<f2", "F64": "<f8", "I8": "<i1", "I16": "<i2", "I32": "<i4", "I64": "<i8"}


class GGUFError(ValueError):
    """A GGUF file, or a tensor's ggml blocks, that cannot be read or written (the reader's error too)."""


def bits_per_weight(type_name):
    """8 · bytes per block / values per block: what the format costs a weight, its scales included."""
    block, nbytes = QUANT_SIZES[type_name]
    return 8 * nbytes / block


# --- reading blocks --------------------------------------------------------------------------------------------
def _blocks(raw, type_name):
    """Raw bytes (any library; a NumPy memory map as it is) -> (n blocks, bytes per block of type_name) uint8."""
    if not is_array_api_obj(raw):  # bytes, a memoryview
        raw = np.asarray(raw, dtype=np.uint8)
    xp = array_namespace(raw)
    return xp.reshape(raw, (-1, QUANT_SIZES[type_name][1]))


def _half(blocks, start):
    """The fp16 scalar at bytes start, start+1 of every block (little-endian), as float32 (n, 1)."""
    xp = array_namespace(blocks)
    code = xp.astype(blocks[:, start], xp.int32) + 256 * xp.astype(blocks[:, start + 1], xp.int32)
    return from_codes(code, "float16")[:, None]


def _f32(a):
    xp = array_namespace(a)
    return xp.astype(a, xp.float32)


def _int8(qs):
    """Bytes read as two's-complement int8 (b − 256 where b ≥ 128), as float32.  uint8 → int8 wraps around in
    NumPy, torch and CuPy alike (the array API leaves it to the library; a test checks it for NumPy and torch)."""
    xp = array_namespace(qs)
    return _f32(xp.astype(qs, xp.int8))


def _nibbles(qs):
    """(n, k) bytes -> (n, 2k) unsigned 4-bit values: the low nibbles are values 0 … k−1, the high ones k … 2k−1."""
    xp = array_namespace(qs)
    return xp.concat([qs & 0x0F, qs >> 4], axis=1)


def _bit_planes(bits, n_planes, width=1):
    """(n, k) bytes -> (n, n_planes, k): plane j holds (b >> width·j) & (2^width − 1) of every byte b."""
    xp = array_namespace(bits)
    mask = (1 << width) - 1
    return xp.stack([(bits >> (width * j)) & mask for j in range(n_planes)], axis=1)


def _high_bits(qh):
    """Q5_0/Q5_1's 4 bytes qh (a little-endian u32) -> (n, 32): bit j of byte i is value 8i + j's fifth bit."""
    xp = array_namespace(qh)
    planes = _bit_planes(qh, 8)  # (n, 8 bits, 4 bytes)
    return xp.reshape(xp.permute_dims(planes, (0, 2, 1)), (qh.shape[0], 32))


def _flat(x):
    return array_namespace(x).reshape(x, (-1,))


# --- the 32-value formats ---------------------------------------------------------------------------------------
def dequantize_q8_0(raw):
    r"""Q8_0: x = d · q   (d: fp16 scale, q: int8), 32 values in 34 bytes:

        bytes  0-1   2 ................................ 33
               d     q_0 q_1 …                      q_31    (int8)
    """
    b = _blocks(raw, "Q8_0")
    return _flat(_half(b, 0) * _int8(b[:, 2:]))


def dequantize_q8_1(raw):
    r"""Q8_1: x = d · q, 32 values in 36 bytes (s = d · Σq, for dot products, is not needed here):

        bytes  0-1  2-3  4 ............................. 35
               d    s    q_0 …                       q_31    (int8)
    """
    b = _blocks(raw, "Q8_1")
    return _flat(_half(b, 0) * _int8(b[:, 4:]))


def dequantize_q4_0(raw):
    r"""Q4_0: x = d · (q − 8), q unsigned 4-bit, 32 values in 18 bytes:

        bytes  0-1   2 ................. 17
               d     q_0|q_16  q_1|q_17 …  q_15|q_31    (low nibble | high nibble)
    """
    b = _blocks(raw, "Q4_0")
    return _flat(_half(b, 0) * (_f32(_nibbles(b[:, 2:])) - 8.0))


def dequantize_q4_1(raw):
    r"""Q4_1: x = d · q + m, q unsigned 4-bit, 32 values in 20 bytes (a scale and a minimum per block):

        bytes  0-1  2-3  4 ................. 19
               d    m    q_0|q_16  …  q_15|q_31          (low nibble | high nibble)
    """
    b = _blocks(raw, "Q4_1")
    return _flat(_half(b, 0) * _f32(_nibbles(b[:, 4:])) + _half(b, 2))


def _five_bits(qh, qs):
    """q = low nibble (from qs) + 16 · fifth bit (bit j of the u32 qh for value j)."""
    return _f32(_nibbles(qs) | (_high_bits(qh) << 4))


def dequantize_q5_0(raw):
    r"""Q5_0: x = d · (q − 16), q unsigned 5-bit, 32 values in 22 bytes:

        bytes  0-1  2-5                  6 ................. 21
               d    qh: bit j = q_j's 5th  q_0|q_16 … q_15|q_31   (low 4 bits, low nibble | high nibble)
    """
    b = _blocks(raw, "Q5_0")
    return _flat(_half(b, 0) * (_five_bits(b[:, 2:6], b[:, 6:]) - 16.0))


def dequantize_q5_1(raw):
    r"""Q5_1: x = d · q + m, q unsigned 5-bit, 32 values in 24 bytes:

        bytes  0-1  2-3  4-7                  8 ................. 23
               d    m    qh: bit j = q_j's 5th  q_0|q_16 … q_15|q_31
    """
    b = _blocks(raw, "Q5_1")
    return _flat(_half(b, 0) * _five_bits(b[:, 4:8], b[:, 8:]) + _half(b, 2))


# --- the K-quants: super-blocks of 256 values ----------------------------------------------------------------
def _k_scales(s):
    r"""Q4_K/Q5_K's 12 bytes -> (scales, minimums), 8 six-bit integers each (one per sub-block of 32):

        byte  0-3   sc_0..sc_3 in the low 6 bits; the top 2 bits are sc_4..sc_7's high bits
              4-7   m_0..m_3   in the low 6 bits; the top 2 bits are m_4..m_7's high bits
              8-11  sc_4..sc_7's low 4 bits | m_4..m_7's low 4 bits << 4
    """
    xp = array_namespace(s)
    a, m, low = s[:, 0:4], s[:, 4:8], s[:, 8:12]
    scales = xp.concat([a & 63, (low & 0x0F) | ((a >> 2) & 0x30)], axis=1)
    mins = xp.concat([m & 63, (low >> 4) | ((m >> 2) & 0x30)], axis=1)
    return _f32(scales), _f32(mins)


def _sub_blocks(q, n_sub):
    xp = array_namespace(q)
    return xp.reshape(_f32(q), (q.shape[0], n_sub, -1))


def dequantize_q2_k(raw):
    r"""Q2_K: 256 values in 84 bytes, 16 sub-blocks of 16:  x = d · s_j · q − dmin · m_j,  q 2-bit.

        bytes  0-15    one byte per sub-block j: s_j (low 4 bits) | m_j (high 4 bits)
               16-79   q, four 2-bit values a byte: bytes 16+32h+i, bits 2s..2s+1 hold value 128h + 32s + i
               80-81   d      82-83  dmin     (fp16)
    """
    xp = array_namespace(raw)
    b = _blocks(raw, "Q2_K")
    sc, qs = b[:, 0:16], b[:, 16:80]
    q = xp.concat([_bit_planes(qs[:, 0:32], 4, 2), _bit_planes(qs[:, 32:64], 4, 2)], axis=1)  # (n, 8, 32)
    dl = _half(b, 80) * _f32(sc & 0x0F)  # (n, 16)
    ml = _half(b, 82) * _f32(sc >> 4)
    return _flat(dl[:, :, None] * _sub_blocks(q, 16) - ml[:, :, None])


def dequantize_q3_k(raw):
    r"""Q3_K: 256 values in 110 bytes, 16 sub-blocks of 16:  x = d · (s_j − 32) · (q − 4·(1 − h)),  q 2-bit, h 1-bit.

        bytes  0-31    hmask: bit j of byte i is h of value 32j + i (h = 1: no offset; h = 0: q − 4)
               32-95   q, four 2-bit values a byte, as Q2_K's (bytes 32+32h+i, bits 2s: value 128h + 32s + i)
               96-107  s_j, 6 bits each: low 4 bits in bytes 96-103 (j < 8: low nibble of byte j; else the high
                       nibble of byte j − 8), high 2 bits in bytes 104-107 (bits 2⌊j/4⌋ of byte 104 + j mod 4)
               108-109 d      (fp16)
    """
    xp = array_namespace(raw)
    b = _blocks(raw, "Q3_K")
    hmask, qs, s = b[:, 0:32], b[:, 32:96], b[:, 96:108]
    low = xp.concat([s[:, 0:8] & 0x0F, s[:, 0:8] >> 4], axis=1)  # (n, 16)
    high = xp.reshape(_bit_planes(s[:, 8:12], 4, 2), (s.shape[0], 16))
    scales = _f32(low | (high << 4)) - 32.0
    q = xp.concat([_bit_planes(qs[:, 0:32], 4, 2), _bit_planes(qs[:, 32:64], 4, 2)], axis=1)  # (n, 8, 32)
    h = _bit_planes(hmask, 8)  # (n, 8, 32)
    q = _f32(q) - 4.0 * _f32(1 - h)
    dl = _half(b, 108) * scales  # (n, 16)
    return _flat(dl[:, :, None] * xp.reshape(q, (q.shape[0], 16, 16)))


def dequantize_q4_k(raw):
    r"""Q4_K: 256 values in 144 bytes, 8 sub-blocks of 32:  x = d · s_j · q − dmin · m_j,  q 4-bit.

        bytes  0-1  d     2-3  dmin   (fp16)
               4-15    s_j, m_j: 6 bits each, packed as :func:`_k_scales` draws
               16-143  q: bytes 16+32c+i hold value 64c + i (low nibble) and 64c + 32 + i (high nibble)
    """
    p = q4_k_fields(raw)
    dl, ml = p["d"] * p["scales"], p["dmin"] * p["mins"]  # (n, 8)
    return _flat(dl[:, :, None] * _f32(p["q"]) - ml[:, :, None])


def q4_k_fields(raw):
    """The fields of Q4_K super-blocks, as :func:`dequantize_q4_k` reads them: {"d", "dmin": float32 (n, 1),
    "scales", "mins": the 6-bit s_j, m_j as float32 (n, 8), "q": the 4-bit values (n, 8, 32) uint8}."""
    xp = array_namespace(raw)
    b = _blocks(raw, "Q4_K")
    sc, mn = _k_scales(b[:, 4:16])
    qs = xp.reshape(b[:, 16:144], (b.shape[0], 4, 32))
    q = xp.reshape(xp.stack([qs & 0x0F, qs >> 4], axis=2), (b.shape[0], 8, 32))
    return {"d": _half(b, 0), "dmin": _half(b, 2), "scales": sc, "mins": mn, "q": q}


def dequantize_q5_k(raw):
    r"""Q5_K: 256 values in 176 bytes, 8 sub-blocks of 32:  x = d · s_j · q − dmin · m_j,  q 5-bit.

        bytes  0-1  d     2-3  dmin   (fp16)
               4-15    s_j, m_j as Q4_K's
               16-47   qh: bit j of byte i is the fifth bit of value 32j + i
               48-175  the low 4 bits, as Q4_K's q
    """
    xp = array_namespace(raw)
    b = _blocks(raw, "Q5_K")
    sc, mn = _k_scales(b[:, 4:16])
    qs = xp.reshape(b[:, 48:176], (b.shape[0], 4, 32))
    low = xp.reshape(xp.stack([qs & 0x0F, qs >> 4], axis=2), (b.shape[0], 8, 32))
    q = low | (_bit_planes(b[:, 16:48], 8) << 4)
    dl, ml = _half(b, 0) * sc, _half(b, 2) * mn
    return _flat(dl[:, :, None] * _f32(q) - ml[:, :, None])


def dequantize_q6_k(raw):
    r"""Q6_K: 256 values in 210 bytes, 16 sub-blocks of 16:  x = d · s_j · (q − 32),  q 6-bit, s_j int8.

        bytes  0-127    the low 4 bits: bytes 64h + i hold value 128h + i (low nibble), 128h + 64 + i (high)
               128-191  the high 2 bits: bytes 128 + 32h + i, bits 2s..2s+1, are value 128h + 32s + i's
               192-207  s_j (int8)      208-209  d (fp16)
    """
    xp = array_namespace(raw)
    b = _blocks(raw, "Q6_K")
    ql = xp.reshape(b[:, 0:128], (b.shape[0], 2, 64))
    low = xp.reshape(xp.stack([ql & 0x0F, ql >> 4], axis=2), (b.shape[0], 8, 32))
    qh = b[:, 128:192]
    high = xp.concat([_bit_planes(qh[:, 0:32], 4, 2), _bit_planes(qh[:, 32:64], 4, 2)], axis=1)  # (n, 8, 32)
    q = _f32(low | (high << 4)) - 32.0
    dl = _half(b, 208) * _int8(b[:, 192:208])  # (n, 16)
    return _flat(dl[:, :, None] * xp.reshape(q, (q.shape[0], 16, 16)))


DEQUANTIZE = {"Q8_0": dequantize_q8_0, "Q8_1": dequantize_q8_1, "Q4_0": dequantize_q4_0, "Q4_1": dequantize_q4_1,
              "Q5_0": dequantize_q5_0, "Q5_1": dequantize_q5_1, "Q2_K": dequantize_q2_k, "Q3_K": dequantize_q3_k,
              "Q4_K": dequantize_q4_k, "Q5_K": dequantize_q5_k, "Q6_K": dequantize_q6_k}


def dequantize(raw, type_name, name="tensor"):
    """float32 values (flat) of a tensor's raw bytes in ggml type ``type_name``."""
    if type_name in PLAIN:
        return np.asarray(raw, dtype=np.uint8).view(PLAIN[type_name]).astype(np.float32)
    if type_name == "BF16":  # bfloat16 is the top half of a float32
        return (np.asarray(raw, dtype=np.uint8).view("<u2").astype(np.uint32) << 16).view(np.float32)
    if type_name not in DEQUANTIZE:
        raise GGUFError(f"{name}: ggml type {type_name} cannot be dequantized here "
                              f"(known: {', '.join(sorted([*PLAIN, 'BF16', *DEQUANTIZE]))})")
    return DEQUANTIZE[type_name](raw)


# --- quantizers: float32 rows -> the format's bytes (NumPy) -----------------------------------------------------
def _round_half_away(x):
    """Round to nearest, ties away from zero (C's roundf, as ggml rounds; NumPy's np.round rounds ties to even)."""
    return np.sign(x) * np.floor(np.abs(x) + np.float32(0.5))


def _inverse(d):
    """1/d, and 0 where d = 0 (a block of zeros: every q is then the offset)."""
    with np.errstate(divide="ignore"):
        return np.where(d == 0, np.float32(0), np.float32(1) / d).astype(np.float32)


def _pack_nibbles(q):
    """(n, 32) values < 16 -> (n, 16) bytes: value i in the low nibble, value 16 + i in the high one."""
    return (q[:, :16] | (q[:, 16:] << 4)).astype(np.uint8)


def _pack_high_bits(q):
    """(n, 32) 5-bit values -> (n, 4) bytes: the u32 whose bit j is value j's fifth bit, little-endian."""
    return np.packbits((q >> 4).astype(np.uint8) & 1, axis=1, bitorder="little")


def _half_bytes(d):
    """(n, 1) float32 -> (n, 2) bytes of its float16 (rounded to nearest even, little-endian).  A scale or minimum
    beyond float16's range is an error: the format cannot hold such a block."""
    with np.errstate(over="ignore"):
        h = d.astype(np.float16)
    if not np.isfinite(h).all():
        raise GGUFError(f"a block's scale or minimum ({float(np.abs(d).max()):.3g}) overflows float16 (largest "
                        "65504): the values are too large for this format")
    return h.view(np.uint8)


def _signed_absmax(blocks):
    """Each block's value of largest magnitude, with its sign (the first of equals)."""
    return np.take_along_axis(blocks, np.abs(blocks).argmax(axis=1)[:, None], axis=1)


def quantize_q8_0(blocks):
    r"""d = max|x| / 127,  q = round(x / d) (ties away from zero) as int8."""
    d = np.abs(blocks).max(axis=1, keepdims=True) / np.float32(127)
    q = _round_half_away(blocks * _inverse(d)).astype(np.int8)
    return np.concatenate([_half_bytes(d), q.view(np.uint8)], axis=1)


def quantize_q4_0(blocks):
    r"""d = x_max / −8 (x_max: the value of largest magnitude, signed, so that it lands on q = 0 exactly),
    q = min(15, ⌊x / d + 8.5⌋)."""
    d = _signed_absmax(blocks) / np.float32(-8)
    q = np.minimum(np.trunc(blocks * _inverse(d) + np.float32(8.5)), 15).astype(np.uint8)
    return np.concatenate([_half_bytes(d), _pack_nibbles(q)], axis=1)


def quantize_q4_1(blocks):
    r"""m = min x,  d = (max x − m) / 15,  q = min(15, ⌊(x − m) / d + 0.5⌋)."""
    lo, hi = blocks.min(axis=1, keepdims=True), blocks.max(axis=1, keepdims=True)
    d = (hi - lo) / np.float32(15)
    q = np.minimum(np.trunc((blocks - lo) * _inverse(d) + np.float32(0.5)), 15).astype(np.uint8)
    return np.concatenate([_half_bytes(d), _half_bytes(lo), _pack_nibbles(q)], axis=1)


def quantize_q5_0(blocks):
    r"""d = x_max / −16,  q = min(31, ⌊x / d + 16.5⌋): Q4_0 with one more bit."""
    d = _signed_absmax(blocks) / np.float32(-16)
    q = np.minimum(np.trunc(blocks * _inverse(d) + np.float32(16.5)), 31).astype(np.uint8)
    return np.concatenate([_half_bytes(d), _pack_high_bits(q), _pack_nibbles(q & 0x0F)], axis=1)


def quantize_q5_1(blocks):
    r"""m = min x,  d = (max x − m) / 31,  q = min(31, ⌊(x − m) / d + 0.5⌋): Q4_1 with one more bit."""
    lo, hi = blocks.min(axis=1, keepdims=True), blocks.max(axis=1, keepdims=True)
    d = (hi - lo) / np.float32(31)
    q = np.minimum(np.trunc((blocks - lo) * _inverse(d) + np.float32(0.5)), 31).astype(np.uint8)
    return np.concatenate([_half_bytes(d), _half_bytes(lo), _pack_high_bits(q), _pack_nibbles(q & 0x0F)], axis=1)


QUANTIZE = {"Q8_0": quantize_q8_0, "Q4_0": quantize_q4_0, "Q4_1": quantize_q4_1, "Q5_0": quantize_q5_0,
            "Q5_1": quantize_q5_1}


def quantize(x, type_name, name="x"):
    """The bytes of a float matrix x (rows, n) in ggml type ``type_name`` (one of QUANTIZE): (rows, n / 32 ·
    bytes per block) uint8, each row its own run of blocks, as a GGUF file holds it.  x must be finite and n a
    multiple of 32."""
    if type_name not in QUANTIZE:
        raise GGUFError(f"type_name must be one of {', '.join(QUANTIZE)}, got {type_name!r}")
    x = np.asarray(x)
    block, block_bytes = QUANT_SIZES[type_name]
    if x.ndim != 2 or x.shape[1] % block:
        raise GGUFError(f"{name} must be a matrix whose rows are a multiple of {block} values for "
                              f"{type_name}, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise GGUFError(f"{name} holds NaN or infinite values: {type_name} cannot store them")
    blocks = x.astype(np.float32).reshape(-1, block)
    return QUANTIZE[type_name](blocks).reshape(x.shape[0], -1)


# --- a tensor kept as its blocks -----------------------------------------------------------------------------
BLOCK_TYPES = tuple(DEQUANTIZE)  # the block formats a GGUFMatrix keeps as they are
TILED_TYPES = ("Q8_0", "Q4_0", "Q4_1")  # the ones re-laid for the tile product (core.tiled)
RELAY_ROWS = 4096  # rows re-laid at a time: the temporaries stay small beside the matrix


def tile_codes(raw, type_name, shape):
    r"""A (rows, n) matrix of ``type_name`` blocks (NumPy bytes) re-laid for the tile product
    (:class:`~transformer_np.core.tiled.RowCodes`), every value and every byte count kept — the file's bytes
    reordered, the fp16 scales beside the codes instead of inside each block:

        Q8_0   q int8 as it is, d per block                                x = d·q          1.0625 bytes a weight
        Q4_0   a row's values i and i + n/2 in byte i (the file pairs      x = d·(q − 8)    0.5625
               q_j with q_{j+16} of a block), d per block
        Q4_1   the same, d and m per block                                 x = d·q + m      0.625
    """
    if type_name not in TILED_TYPES:
        raise GGUFError(f"type_name must be one of {', '.join(TILED_TYPES)} for the tile product, got {type_name!r}")
    R, n = shape
    block, block_bytes = QUANT_SIZES[type_name]
    per_row = n // block
    raw = np.asarray(raw).reshape(R, per_row * block_bytes)
    q = np.empty((R, n if type_name == "Q8_0" else n // 2), np.int8 if type_name == "Q8_0" else np.uint8)
    d = np.empty((R, per_row), np.float16)  # fp16 as in the file (widened exactly where they are used)
    m = np.empty((R, per_row), np.float16) if type_name == "Q4_1" else None
    for r0 in range(0, R, RELAY_ROWS):
        b = raw[r0: r0 + RELAY_ROWS].reshape(-1, block_bytes)  # (blocks, bytes)
        rows = slice(r0, r0 + b.shape[0] // per_row)
        d[rows] = b[:, 0:2].copy().view("<f2").reshape(-1, per_row)
        if type_name == "Q8_0":
            q[rows] = b[:, 2:].view(np.int8).reshape(-1, n)
            continue
        if m is not None:
            m[rows] = b[:, 2:4].copy().view("<f2").reshape(-1, per_row)
        q[rows] = tiled.pack_halves(_nibbles(b[:, block_bytes - 16:]).reshape(-1, n))  # the blocks' q_0 … q_31
    fmt = {"Q8_0": "int8", "Q4_0": "offset4", "Q4_1": "uint4"}[type_name]
    return tiled.RowCodes(q, fmt, d, m, block)


class GGUFMatrix(StoredWeight):
    """A matrix kept as ggml blocks (a GGUF file's tensor: a view of its memory map, nothing copied; or
    :func:`quantize`'s bytes), dequantized at each use — for a product of Q8_0/Q4_0/Q4_1 blocks (NumPy),
    re-laid at construction (:func:`tile_codes`) and widened a tile of rows at a time; of the other types, the
    whole matrix; for an embedding lookup, only the rows asked for (each row of ne0 values is its own run of
    blocks).  shape: (rows, values
    per row), the file's (ne1, ne0)."""

    def __init__(self, raw, type_name, shape, name="tensor"):
        super().__init__(shape)
        if type_name not in BLOCK_TYPES or shape[1] % QUANT_SIZES[type_name][0]:
            raise GGUFError(f"{name}: {type_name} rows of {shape[1]} values cannot be kept as blocks")
        self.raw, self.type_name, self.name = raw, type_name, name
        block, block_bytes = QUANT_SIZES[type_name]
        self.row_bytes = shape[1] // block * block_bytes
        self.compute_dtype = float32_of(raw)
        if type_name in TILED_TYPES and is_numpy_namespace(array_namespace(raw)):
            self.row_codes = tile_codes(raw, type_name, shape)  # the outputs of x @ W.T are W's rows

    @classmethod
    def quantized(cls, w, type_name, name="w"):
        """w (rows, n) quantized to ``type_name`` and kept as its blocks."""
        return cls(quantize(w, type_name, name).reshape(-1), type_name, np.shape(w), name)

    @property
    def nbytes(self):
        """Bytes held: the re-laid codes where the tile product reads them, else the file's blocks."""
        return self.raw.nbytes if self.row_codes is None else self.row_codes.nbytes

    def dequantize_stored(self, rows=None):
        if self.row_codes is not None:
            return self.row_codes.dequantize(rows)
        xp = array_namespace(self.raw)
        if rows is None:
            return xp.reshape(dequantize(self.raw, self.type_name, self.name), self._shape)
        blocks = xp.take(xp.reshape(self.raw, (self._shape[0], self.row_bytes)), rows, axis=0)  # (n, row_bytes)
        return xp.reshape(dequantize(xp.reshape(blocks, (-1,)), self.type_name, self.name),
                          (rows.shape[0], self._shape[1]))
