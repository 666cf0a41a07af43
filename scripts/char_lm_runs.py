"""Chapter 8's character-level LM, trained long enough to compare: with the sin-cos positions and without them
(the ablation), each with its held-out loss every 50 steps.  Writes docs/char_lm_runs.json, which the chapter
draws and checks its own live (shorter) run against.

    python scripts/char_lm_runs.py [--steps 1500] [--out docs/char_lm_runs.json]
"""

import argparse
import hashlib
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from transformer_np.training.loop import train_char_lm
from transformer_np.training.tasks import docstring_corpus

RUNS = {"sin-cos positions": {"positional_encoding": True}, "no positions": {"positional_encoding": False}}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "docs/char_lm_runs.json"))
    args = parser.parse_args(argv)
    corpus = docstring_corpus()
    out = {"command": f"python scripts/char_lm_runs.py --steps {args.steps}", "characters": len(corpus),
           "corpus_sha256": hashlib.sha256(corpus.encode()).hexdigest(),
           "machine": f"{platform.machine()}, {os.cpu_count()} cores", "runs": {}}
    for name, options in RUNS.items():
        t0 = time.perf_counter()
        model, tok, history = train_char_lm(corpus, steps=args.steps, **options)
        out["runs"][name] = {"options": options, "loss": [round(v, 6) for v in history["loss"]],
                             "val": [[s, round(v, 6)] for s, v in history["val"]],
                             "seconds": round(time.perf_counter() - t0, 1)}
        print(f"{name}: held-out loss {history['val'][-1][1]:.3f} after {args.steps} steps "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    path = Path(args.out)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
