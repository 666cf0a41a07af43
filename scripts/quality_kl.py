"""The quantization rows of issue #28, measured by KL divergence from float32 on a prefix of the evaluation text:
float32, int8, GGUF's Q8_0 / Q4_1 / Q4_0 and the file's own blocks (the grid lesson), and RTN, GPTQ and AWQ at
4 and 3 bits in groups of 64 — a shorter run than ``bench quality`` (all 38 rows on 23,294 tokens take hours
on the project's 2-core machine).

    python scripts/quality_kl.py [--tokens 4096] [--calibration-tokens 2048] [--json PATH]
"""

import argparse

from transformer_np.cli.bench.quality import bench_smollm2
from transformer_np.model.checkpoint import write_json

ROWS = [("float32", {}), ("int8", {}), ("q8_0", {}), ("gguf", {}), ("q4_1", {}), ("q4_0", {}),
        ("int4", {"group_size": 64}), ("gptq", {"bits": 4, "group_size": 64}), ("awq", {"bits": 4, "group_size": 64}),
        ("int4", {"bits": 3, "group_size": 64}), ("gptq", {"bits": 3, "group_size": 64}),
        ("awq", {"bits": 3, "group_size": 64})]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--calibration-tokens", type=int, default=2048)
    ap.add_argument("--json", help="also write the rows to this JSON file")
    args = ap.parse_args()
    rows, _, _ = bench_smollm2(args.tokens, args.calibration_tokens, ROWS)
    if args.json:
        write_json({"tokens": args.tokens, "calibration_tokens": args.calibration_tokens, "rows": rows}, args.json)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
