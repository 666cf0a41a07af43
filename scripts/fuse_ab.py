"""A/B of core.fast's kernels against core.nn's plain lines: the rule that picks them (core.fast.applies: NumPy
float32 inputs from MIN_ELEMENTS elements on) run end to end with MIN_ELEMENTS at 64 Ki elements (the
package's), at one piece (256 Ki), and never — the GPT-2-shaped encoder (12 layers, C = 768, GELU, pre-LN,
random weights) and SmolLM2's 512-token prefill, at batch 1 and 4, alternating in one process; or
(``--micro``) softmax, causal-masked softmax, GELU, layer norm and SiLU alone at sizes from a decode step's
scores to a prefill's, plain against kernel.

    python scripts/fuse_ab.py [--batches 1 4] [--repeat 4]        (needs the SmolLM2 weights)
    python scripts/fuse_ab.py --micro

Prints the median and best of each; core/fast.py's docstring quotes a run.
"""

import argparse
import math
import time

import transformer_np  # noqa: F401 - first, so that it sets OpenBLAS's spin timeout before NumPy loads

# isort: split
import numpy as np

from transformer_np.core import fast, nn
from transformer_np.efficient.quality import eval_text
from transformer_np.model.config import TransformerConfig
from transformer_np.model.params import init_params
from transformer_np.model.stacks import encoder
from transformer_np.pretrained.llama import llama_logits, load_smollm2

MODES = {"from 64 Ki": 1 << 16, "from one piece": fast.CHUNK, "never": math.inf}


def workloads(batch, lm):
    gpt2 = TransformerConfig(d_model=768, n_heads=12, n_encoder_layers=12, n_decoder_layers=0, d_ff=3072,
                             vocab_size=1, max_len=1024, activation="gelu", norm_first=True)
    params = init_params(gpt2, 0)["encoder"]
    x = np.random.default_rng(0).standard_normal((batch, 512, 768), dtype=np.float32)
    text = eval_text()
    ids = np.array([lm.tokenize(text[i * 3000:(i + 1) * 3000])[:512] for i in range(batch)])
    return {f"GPT-2-shaped encoder, B={batch}, S=512": lambda: encoder(x, params, gpt2),
            f"SmolLM2 prefill, B={batch}, T=512": lambda: llama_logits(lm.params, ids, lm.config, last_only=True)}


def median_us(fn, n):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e6 * float(np.median(times))


def micro():
    rng = np.random.default_rng(0)
    kept = fast.MIN_ELEMENTS
    names = ("softmax", "causal-masked softmax", "GELU", "layer norm", "SiLU")
    print("median µs, plain / kernel")
    print(f"{'shape':>18} {'elements':>10}   " + "   ".join(f"{n:>21}" for n in names))
    try:
        for shape in [(9, 1, 300), (9, 16, 256), (9, 64, 64), (9, 64, 256), (9, 128, 256), (9, 512, 512)]:
            x = rng.standard_normal(shape, dtype=np.float32)
            mask = np.tril(np.ones(shape[-2:], bool), shape[-1] - shape[-2])
            n = max(5, int(2e5 // x.size))
            cells = []
            g, b = np.ones(shape[-1], np.float32), np.zeros(shape[-1], np.float32)
            for fn in (lambda x=x: nn.softmax(x), lambda x=x, m=mask: nn.softmax(x, mask=m), lambda x=x: nn.gelu(x),
                       lambda x=x, g=g, b=b: nn.layer_norm(x, g, b), lambda x=x: nn.silu(x)):
                pair = []
                for mode in (math.inf, 0):
                    fast.MIN_ELEMENTS = mode
                    fn()
                    pair.append(median_us(fn, n))
                cells.append(f"{pair[0]:.0f} / {pair[1]:.0f}")
            print(f"{str(shape):>18} {x.size:>10,}   " + "   ".join(f"{c:>21}" for c in cells))
    finally:
        fast.MIN_ELEMENTS = kept


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--repeat", type=int, default=4)
    ap.add_argument("--micro", action="store_true", help="softmax and GELU alone, plain against kernel")
    args = ap.parse_args()
    if args.micro:
        return micro()
    lm = load_smollm2()
    kept = fast.MIN_ELEMENTS
    try:
        for batch in args.batches:
            fns = workloads(batch, lm)
            times = {(f, m): [] for f in fns for m in MODES}
            for f in fns.values():
                f()  # warm up
            for _ in range(args.repeat):
                for name, f in fns.items():
                    for mode, size in MODES.items():
                        fast.MIN_ELEMENTS = size
                        t = time.perf_counter()
                        f()
                        times[(name, mode)].append(time.perf_counter() - t)
            for name in fns:
                cells = [f"{mode} {1e3 * np.median(times[(name, mode)]):7.1f} ms" for mode in MODES]
                print(f"{name:38s} " + "   ".join(cells))
    finally:
        fast.MIN_ELEMENTS = kept
    print(f"(medians of {args.repeat}; the package takes the kernels from MIN_ELEMENTS = {kept:,} elements on)")


if __name__ == "__main__":
    main()
