"""Time one decode step's products (N rows of x against SmolLM2-135M's 210 layer matrices and its tied output
table) in each stored format, tile by tile (core.tiled), against float32 ``x @ W`` — the measurement behind the
tile size and the thread split.  Random weights of the real shapes (the speed does not depend on the values).

    python scripts/tiles_ab.py [--rows 1] [--threads 2] [--tile 131072] [--repeat 5] [--formats int8 q4_1 ...]
"""

import argparse
import time

import numpy as np

from transformer_np.core import ggml_formats, tiled
from transformer_np.efficient import precision
from transformer_np.efficient import quantize as Q

SHAPES = [(576, 576), (192, 576), (192, 576), (576, 576), (1536, 576), (1536, 576), (576, 1536)]  # (C_out, C_in)
MAKE = {
    "float32": lambda w: w.T,
    "bfloat16": lambda w: precision.CastMatrix(w.T, "bfloat16"),
    "float16": lambda w: precision.CastMatrix(w.T, "float16"),
    "float8_e4m3fn": lambda w: precision.CastMatrix(w.T, "float8_e4m3fn"),
    "int8": lambda w: Q.WeightOnlyMatrix(w.T, 8, axis=0),
    "int8-g64": lambda w: Q.WeightOnlyMatrix(w.T, 8, axis=0, group_size=64),
    "int4-g64": lambda w: Q.WeightOnlyMatrix(w.T, 4, axis=0, group_size=64),
    "q8_0": lambda w: ggml_formats.GGUFMatrix.quantized(w, "Q8_0").T,
    "q4_0": lambda w: ggml_formats.GGUFMatrix.quantized(w, "Q4_0").T,
    "q4_1": lambda w: ggml_formats.GGUFMatrix.quantized(w, "Q4_1").T,
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1)
    ap.add_argument("--layers", type=int, default=30)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--tile", type=int, default=tiled.TILE_ELEMENTS)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--formats", nargs="+", default=list(MAKE))
    a = ap.parse_args()
    tiled.TILE_ELEMENTS = a.tile
    rng = np.random.default_rng(0)
    # every layer its own matrices: 0.5 GB of float32, far past the caches, as in the model
    base = [rng.standard_normal(s, dtype=np.float32) * 0.05 for _ in range(a.layers) for s in SHAPES]
    base.append(rng.standard_normal((49152, 576), dtype=np.float32) * 0.05)  # the output table
    x = {c: rng.standard_normal((a.rows, c)).astype(np.float32) for c in (576, 1536)}
    ref = None
    for fmt in a.formats:
        mats = [MAKE[fmt](w) for w in base]
        best = np.inf
        for _ in range(a.repeat):
            t0 = time.perf_counter()
            for w in mats:
                if isinstance(w, np.ndarray):
                    x[w.shape[0]] @ w
                else:
                    tiled.linear(x[w.shape[0]], w.output_codes(), a.threads) if w.output_codes() else x[w.shape[0]] @ w
            best = min(best, time.perf_counter() - t0)
        nbytes = sum(w.nbytes for w in mats)
        ref = ref or best
        print(f"{fmt:14s} {best * 1e3:7.1f} ms   {ref / best:5.2f}x float32   {nbytes / 1e6:6.0f} MB  "
              f"{nbytes / best / 1e9:5.1f} GB/s", flush=True)


if __name__ == "__main__":
    main()
