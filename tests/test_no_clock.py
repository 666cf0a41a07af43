"""Tests never read a clock to pass or fail: speed is a benchmark's output, never an assertion, so the suite passes
on a loaded machine.  This guard walks tests/ and refuses

* a call to a clock (``time.time``, ``time.perf_counter``, ``time.monotonic``, ``time.process_time``), and
* a comparison of a measured rate or duration (a name or key such as ``*_s``, ``tokens_per_s``, ``mfu``,
  ``speedup``, ``gflops``, ``bandwidth``, ``fraction_of_*``) against a number other than 0 — a bound that a busy
  machine can cross.  ``> 0`` stays allowed: it says a measurement happened, and no load can make it fail.

Where a measured number feeds arithmetic, the test checks the arithmetic (``r["mfu"] == mfu(flops, r["s"], hw)``).
"""

import ast
import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent
CLOCKS = {"time", "perf_counter", "monotonic", "process_time", "perf_counter_ns", "monotonic_ns", "time_ns"}
MEASURED = re.compile(r"(_s\b|_s['\"]|per_s|mfu|mbu|speedup|speed_up|gflops|tflops|bandwidth|fraction_of|_seconds|"
                      r"latency|throughput)")


ORDER = (ast.Lt, ast.LtE, ast.Gt, ast.GtE)  # a bound; == on a measurement never holds by chance


def _is_number(node):
    return isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool)


def clock_reads(tree):
    """Calls of time.<clock>() in a module's tree."""
    return [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
            and isinstance(n.func.value, ast.Name) and n.func.value.id == "time" and n.func.attr in CLOCKS]


def bounds_on_measurements(tree, source):
    """Ordering comparisons of a measured quantity with a non-zero number: (line, text)."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare) or not all(isinstance(op, ORDER) for op in node.ops):
            continue
        sides = [node.left, *node.comparators]
        measured = [s for s in sides if MEASURED.search(ast.get_source_segment(source, s) or "")]
        bounds = [s for s in sides if _is_number(s) and s.value != 0]
        if measured and bounds:
            found.append((node.lineno, ast.get_source_segment(source, node)))
    return found


def test_the_guard_finds_a_clock_and_a_bound_on_a_measurement():
    source = "import time\nt = time.perf_counter()\nassert r['mfu'] <= 1.5\nassert r['tokens_per_s'] > 0\n"
    tree = ast.parse(source)
    assert clock_reads(tree) == [2]
    assert [line for line, _ in bounds_on_measurements(tree, source)] == [3]


def test_no_test_reads_a_clock_or_bounds_a_measured_duration():
    offences = []
    for path in sorted(TESTS.rglob("*.py")):
        if path.name == Path(__file__).name:
            continue
        source = path.read_text()
        tree = ast.parse(source, str(path))
        offences += [f"{path.name}:{line}: reads a clock" for line in clock_reads(tree)]
        offences += [f"{path.name}:{line}: {text}" for line, text in bounds_on_measurements(tree, source)]
    assert not offences, "tests that read a clock to pass or fail:\n" + "\n".join(offences)
