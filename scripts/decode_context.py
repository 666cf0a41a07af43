"""SmolLM2's greedy decoding speed after a prompt of 64 and of 2,048 tokens: what the KV cache's layout costs as
the context grows (the contiguous cache concatenated its whole contents at every step until it preallocated).

    python scripts/decode_context.py [SOURCE_FOLDER]

SOURCE_FOLDER: a checkout of transformer_np to measure (default: the installed package) — how the before and
after of a change are measured in one sitting, alternating runs.  Prints the best of three runs of 32 tokens.
"""

import sys
import time

if len(sys.argv) > 1:
    sys.path.insert(0, sys.argv[1])

import numpy as np  # noqa: E402

import transformer_np as tn  # noqa: E402


def main():
    model = tn.load("smollm2")
    rng = np.random.default_rng(0)
    for context in (64, 2048):
        prompt = rng.integers(0, model.config.vocab_size, context).tolist()
        rates = []
        for _ in range(3):
            session = tn.decoding.LMSession(model, [prompt])
            t0 = time.perf_counter()
            tn.decoding.greedy(session, 32)
            rates.append(32 / (time.perf_counter() - t0))
        print(f"{tn.__file__}: context {context}: {max(rates):.1f} tokens/s (best of 3, 32 new tokens)")


if __name__ == "__main__":
    main()
