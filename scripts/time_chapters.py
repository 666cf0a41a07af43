"""How long "Run All" takes for each chapter on this machine (docs/course.md's lab-time column): each chapter
executed top to bottom in a fresh kernel, as a learner's Run All would, its wall time printed.

    OPENBLAS_NUM_THREADS=2 python scripts/time_chapters.py [notebooks/NN_name.ipynb ...]
"""

import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent

if __name__ == "__main__":
    os.environ.setdefault("MPLBACKEND", "Agg")
    for path in [Path(p) for p in sys.argv[1:]] or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        client = NotebookClient(nb, timeout=600, kernel_name="python3",
                                resources={"metadata": {"path": str(path.parent)}})
        start = time.perf_counter()
        client.execute()
        print(f"{path.stem:40s} {time.perf_counter() - start:5.0f} s", flush=True)
