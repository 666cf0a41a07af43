"""A/B of the norm and SiLU kernels (core.fast.norm_rows, silu_float32, silu_mul_float32) end to end: the
GPT-2-shaped encoder (12 layers, C = 768, GELU, pre-LN, random weights) and SmolLM2's 512-token prefill, at batch
1 and 4, each timed with the kernels on and with core.nn's plain lines, alternating, in one process.

    python scripts/fuse_ab.py [--batches 1 4] [--repeat 4]        (needs the SmolLM2 weights)

Prints the median and best of each; the README's #17 section quotes a run.  (core.nn uses the kernels from
core.fast.FUSE_MIN elements on; this script forces them on and off at every size.)
"""

import argparse
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


def workloads(batch, lm):
    gpt2 = TransformerConfig(d_model=768, n_heads=12, n_encoder_layers=12, n_decoder_layers=0, d_ff=3072,
                             vocab_size=1, max_len=1024, activation="gelu", norm_first=True)
    params = init_params(gpt2, 0)["encoder"]
    x = np.random.default_rng(0).standard_normal((batch, 512, 768), dtype=np.float32)
    text = eval_text()
    ids = np.array([lm.tokenize(text[i * 3000:(i + 1) * 3000])[:512] for i in range(batch)])
    return {f"GPT-2-shaped encoder, B={batch}, S=512": lambda: encoder(x, params, gpt2),
            f"SmolLM2 prefill, B={batch}, T=512": lambda: llama_logits(lm.params, ids, lm.config, last_only=True)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--repeat", type=int, default=4)
    args = ap.parse_args()
    lm = load_smollm2()
    modes = {"kernels": lambda x, *more: isinstance(x, np.ndarray) and x.dtype == np.float32,
             "plain": lambda *arrays: False}
    kept = nn._fuse
    for batch in args.batches:
        fns = workloads(batch, lm)
        times = {(f, m): [] for f in fns for m in modes}
        for f in fns.values():
            f()  # warm up
        for _ in range(args.repeat):
            for name, f in fns.items():
                for mode, rule in modes.items():
                    nn._fuse = rule
                    t = time.perf_counter()
                    f()
                    times[(name, mode)].append(time.perf_counter() - t)
        nn._fuse = kept
        for name in fns:
            k, p = (np.array(times[(name, m)]) * 1e3 for m in modes)
            print(f"{name:38s} kernels {np.median(k):7.1f} ms (best {k.min():7.1f})   plain {np.median(p):7.1f} ms "
                  f"(best {p.min():7.1f})   plain/kernels {np.median(p) / np.median(k):.3f}")
    print(f"(core.nn takes the kernels from core.fast.FUSE_MIN = {fast.FUSE_MIN:,} elements on)")


if __name__ == "__main__":
    main()
