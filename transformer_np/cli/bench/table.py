"""What every benchmark prints with: one table printer (a column is a header, a width and how to read its cell from
a row), the machine the numbers come from, and the process's memory high-water marks."""

from __future__ import annotations

import ctypes
import dataclasses
import os
import platform
import tracemalloc
from collections.abc import Callable

import numpy as np


@dataclasses.dataclass(frozen=True)
class Column:
    """One column: ``value`` is a row's key or a function of the row; ``fmt`` a format spec for the value (a
    number's precision, a scale is the function's job); a value of None prints as "-"."""

    header: str
    value: str | Callable[[dict], object]
    width: int
    fmt: str = ""
    align: str = ">"

    def cell(self, row):
        v = row.get(self.value) if isinstance(self.value, str) else self.value(row)
        text = "-" if v is None else format(v, self.fmt)
        return f"{text:{self.align}{self.width}}"

    def head(self):
        return f"{self.header:{self.align}{self.width}}"


def header_line(columns):
    return " ".join(c.head() for c in columns).rstrip()


def row_line(row, columns):
    return " ".join(c.cell(row) for c in columns).rstrip()


def print_table(rows, columns, print_fn=print):
    """The header, then one line per row."""
    print_fn(header_line(columns))
    for row in rows:
        print_fn(row_line(row, columns))


def machine():
    """The Python, NumPy and (when installed) torch this run used, and a one-line summary of them."""
    info = dict(python=platform.python_version(), numpy=np.__version__, cpus=os.cpu_count(),
                processor=platform.processor() or platform.machine())
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    info["summary"] = f"{info['cpus']} CPUs, numpy {info['numpy']}" + (
        f", torch {info['torch']} ({info['torch_threads']} threads)" if "torch" in info else "")
    return info


def peak_rss_mb(fn):
    """MB the process's resident memory rose to while ``fn`` ran, above what it held before (Linux with glibc:
    freed heap pages are returned first, the high-water mark is reset through /proc/self/clear_refs; elsewhere
    None).  Measured on a first call."""
    def field(name):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(name))  # kB

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed heap pages back, so "before" is what is in use
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = field("VmRSS:")
    except OSError:
        return None
    fn()
    return (field("VmHWM:") - before) / 1024


def peak_traced_bytes(fn):
    """(result, peak bytes allocated while fn ran), by tracemalloc (NumPy reports its buffers to it)."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        out = fn()
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
