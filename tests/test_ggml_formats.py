"""GGML's block formats (core.ggml_formats) against llama.cpp's own Python package, gguf: every quantizer writes
gguf.quants.quantize's bytes — ties, zeros, constant blocks, huge and tiny values included — every dequantizer
gives gguf's float32 bit for bit on blocks of random bytes and on its own quantizations, on NumPy and torch
arrays alike, and a file of K-quant tensors written by gguf's writer reads back."""

import numpy as np
import pytest

from transformer_np.core import ggml_formats as G
from transformer_np.pretrained.gguf import read_gguf

gguf = pytest.importorskip("gguf", reason="the gguf package is the test oracle: pip install gguf==0.19.0")

K_QUANTS = ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]


def qtype(name):
    return getattr(gguf.GGMLQuantizationType, name)


def hard_rows(rng):
    """Rows of 64 values that probe every rounding decision: ties at half steps (both signs), zeros, a constant
    block, the block maximum at either sign, huge and tiny magnitudes, float16's edge of range."""
    rows = [rng.standard_normal(64), np.zeros(64), np.full(64, 3.25), np.full(64, -1e-3),
            np.concatenate([np.arange(-16, 16) + 0.5, np.arange(-16, 16) * 0.25]),  # ties in Q8_0 and Q4_*
            np.concatenate([[127.0], np.arange(-31, 32) * 1.0]),  # d = 1 for Q8_0: every .5 a tie
            np.concatenate([[-8.0], np.arange(31) * 0.5 - 7.5, [8.0], np.arange(31) * -0.5]),  # ±max in one row
            rng.standard_normal(64) * 1e4, rng.standard_normal(64) * 1e-30, np.linspace(-1, 1, 64) ** 3]
    return np.array(rows, dtype=np.float32)


@pytest.mark.parametrize("kind", list(G.QUANTIZE))
def test_quantizers_write_the_gguf_packages_bytes(rng, kind):
    x = np.concatenate([hard_rows(rng), rng.standard_normal((40, 64)).astype(np.float32) * 3])
    ours = G.quantize(x, kind)
    theirs = gguf.quants.quantize(x, qtype(kind))
    assert ours.dtype == np.uint8 and ours.shape == theirs.shape == (len(x), 2 * G.QUANT_SIZES[kind][1])
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("kind", list(G.QUANTIZE))
def test_quantized_then_dequantized_is_gguf_bit_for_bit_and_within_half_a_step(rng, kind):
    x = rng.standard_normal((8, 128)).astype(np.float32)
    raw = G.quantize(x, kind)
    ours = G.dequantize(raw.reshape(-1), kind).reshape(x.shape)
    theirs = gguf.quants.dequantize(raw, qtype(kind))
    np.testing.assert_array_equal(ours.view(np.uint32), theirs.view(np.uint32))
    blocks, back = x.reshape(-1, 32), ours.reshape(-1, 32)
    # half a step of the block's grid at most (Q4_0/Q5_0 put the largest magnitude on q = 0, so the other end of
    # the range is clipped to q = 15 (31): one step there), plus d's rounding to float16 (2^-11 of it) times |q|
    step, most, q_max = {"Q8_0": (np.abs(blocks).max(1) / 127, 0.5, 127), "Q4_0": (np.abs(blocks).max(1) / 8, 1, 8),
                         "Q5_0": (np.abs(blocks).max(1) / 16, 1, 16),
                         "Q4_1": ((blocks.max(1) - blocks.min(1)) / 15, 0.5, 15),
                         "Q5_1": ((blocks.max(1) - blocks.min(1)) / 31, 0.5, 31)}[kind]
    assert np.all(np.abs(back - blocks) <= (most + q_max / 2048) * step[:, None] * 1.001 + 1e-6)


def random_blocks(rng, kind, n=64):
    """n blocks of random bytes with finite float16 scales where the format keeps them."""
    block, nbytes = G.QUANT_SIZES[kind]
    b = rng.integers(0, 256, (n, nbytes), dtype=np.uint8)
    scales = lambda k: rng.standard_normal((n, k)).astype(np.float16).view(np.uint8)  # noqa: E731
    where = {"Q8_0": 0, "Q8_1": 0, "Q4_0": 0, "Q4_1": 0, "Q5_0": 0, "Q5_1": 0, "Q2_K": nbytes - 4, "Q3_K": nbytes - 2,
             "Q4_K": 0, "Q5_K": 0, "Q6_K": nbytes - 2}[kind]
    count = {"Q4_1": 2, "Q5_1": 2, "Q8_1": 2, "Q2_K": 2, "Q4_K": 2, "Q5_K": 2}.get(kind, 1)
    b[:, where:where + 2 * count] = scales(count)
    return b


@pytest.mark.parametrize("kind", [k for k in G.DEQUANTIZE if k != "Q8_1"])
def test_every_dequantizer_equals_gguf_bit_for_bit_on_random_blocks(rng, kind):
    blocks = random_blocks(rng, kind)
    ours = G.dequantize(blocks.reshape(-1), kind)
    theirs = gguf.quants.dequantize(blocks.reshape(-1), qtype(kind))
    assert ours.dtype == np.float32 and ours.shape == (len(blocks) * G.QUANT_SIZES[kind][0],)
    np.testing.assert_array_equal(ours.view(np.uint32), theirs.reshape(-1).view(np.uint32))


@pytest.mark.parametrize("kind", K_QUANTS + ["Q5_0", "Q5_1"])
def test_block_formats_dequantize_on_torch_arrays_to_the_numpy_values(rng, kind):
    torch = pytest.importorskip("torch")
    blocks = random_blocks(rng, kind, n=4).reshape(-1)
    got = G.dequantize(torch.from_numpy(blocks), kind)
    assert isinstance(got, torch.Tensor)
    np.testing.assert_array_equal(got.numpy(), G.dequantize(blocks, kind))


def test_a_file_of_k_quant_tensors_written_by_gguf_reads_back(tmp_path, rng):
    path = tmp_path / "k.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    tensors = {kind: random_blocks(rng, kind, n=6) for kind in K_QUANTS}
    for kind, blocks in tensors.items():  # 2 rows of 768 values each
        w.add_tensor(f"w.{kind}", blocks.reshape(2, -1), raw_dtype=qtype(kind))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    f = read_gguf(path)
    for kind, blocks in tensors.items():
        assert f.tensors[f"w.{kind}"].type == kind and f.tensors[f"w.{kind}"].shape == (2, 768)
        want = gguf.quants.dequantize(blocks.reshape(2, -1), qtype(kind))
        np.testing.assert_array_equal(f.tensor(f"w.{kind}").view(np.uint32), want.view(np.uint32))


def test_bits_per_weight_are_the_formats_own():
    got = {k: G.bits_per_weight(k) for k in ("Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", *K_QUANTS)}
    assert got == {"Q8_0": 8.5, "Q4_0": 4.5, "Q4_1": 5.0, "Q5_0": 5.5, "Q5_1": 6.0, "Q2_K": 2.625, "Q3_K": 3.4375,
                   "Q4_K": 4.5, "Q5_K": 5.5, "Q6_K": 6.5625}


def test_a_matrix_kept_as_its_blocks_multiplies_as_its_dequantized_values(rng):
    w = rng.standard_normal((6, 64)).astype(np.float32)
    m = G.GGUFMatrix.quantized(w, "Q5_1")
    assert m.shape == (6, 64) and m.nbytes == 6 * 2 * 24
    x = rng.standard_normal((3, 64)).astype(np.float32)
    np.testing.assert_allclose(x @ m.T, x @ m.dequantize().T, rtol=1e-6)
    np.testing.assert_array_equal(m.take_rows(np.array([4, 1])), m.dequantize()[[4, 1]])


@pytest.mark.parametrize("bad, message", [
    (np.zeros((2, 40), np.float32), "multiple of 32"), (np.zeros(64, np.float32), "multiple of 32"),
    (np.array([[np.nan] + [0.0] * 31], np.float32), "NaN or infinite"),
    (np.array([[np.inf] + [0.0] * 31], np.float32), "NaN or infinite"),
    (np.full((1, 32), 1e30, np.float32), "overflows float16")])
def test_quantize_refuses_what_a_format_cannot_hold(bad, message):
    with pytest.raises(G.GGUFError, match=message):
        G.quantize(bad, "Q4_0")
    with pytest.raises(G.GGUFError, match="type_name must be one of"):
        G.quantize(np.zeros((1, 32), np.float32), "Q4_K")
