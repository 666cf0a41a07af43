"""Freeze the compression chapter's evaluation and calibration texts from the Python standard library's
docstrings (PSF licence; see transformer_np/efficient/data/NOTICE).  Run once; the texts are committed, so every
measurement reads the same bytes whatever Python runs it.

    python scripts/make_eval_text.py
"""

import importlib
import inspect
import os
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "transformer_np" / "efficient" / "data"
# disjoint module lists: the calibration text never overlaps the evaluation text
EVAL = ["collections", "functools", "itertools", "pathlib", "json", "csv", "datetime", "string", "textwrap",
        "heapq", "bisect", "statistics", "fractions", "random", "shutil", "tempfile", "contextlib", "dataclasses",
        "enum", "queue", "zipfile", "gzip", "hashlib", "hmac"]
CALIBRATION = ["os", "re", "copy", "struct", "difflib", "pprint"]


def docstrings(module_name):
    """The module's docstring, then each public class's and function's, in source order."""
    mod = importlib.import_module(module_name)
    parts = [inspect.getdoc(mod) or ""]
    for name, obj in vars(mod).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != mod.__name__:
            continue
        if inspect.isclass(obj) or inspect.isfunction(obj):
            doc = inspect.getdoc(obj)
            if doc:
                parts.append(f"{name}: {doc}")
    return f"# {module_name}\n\n" + "\n\n".join(p for p in parts if p)


def write(path, modules):
    text = "\n\n".join(docstrings(m) for m in modules) + "\n"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    print(f"{path.name}: {len(text):,} characters from {len(modules)} modules (Python {sys.version.split()[0]})")


if __name__ == "__main__":
    write(OUT / "eval_text.txt", EVAL)
    write(OUT / "calibration_text.txt", CALIBRATION)
