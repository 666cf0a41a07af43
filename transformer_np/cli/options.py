"""What the commands share: argument types that name what they want, and checks that an output path can be
written — run before any long work starts, so that a typo costs seconds, not a training run."""

from __future__ import annotations

import argparse
import contextlib
import errno
import math
import os
import tempfile

try:
    import resource
except ImportError:  # Windows has no resource module
    resource = None

from tqdm import tqdm

from ..efficient.compress import row_converter


class CommandError(Exception):
    """A bad argument the parser could not see (an unwritable path): printed as one 'error:' line, exit 2."""


def _number(text, convert, ok, what):
    try:
        value = convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    return value


def positive_int(text):
    return _number(text, int, lambda v: v >= 1, "a positive integer")


def non_negative_int(text):
    return _number(text, int, lambda v: v >= 0, "an integer >= 0")


def finite_float(text):
    return _number(text, float, math.isfinite, "a finite number")


def positive_float(text):
    return _number(text, float, lambda v: math.isfinite(v) and v > 0, "a finite number > 0")


def non_negative_float(text):
    return _number(text, float, lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0")


def stop_string(text):
    if not text:
        raise argparse.ArgumentTypeError("must be a non-empty string")
    return text


def probability(text):
    return _number(text, float, lambda v: 0 < v <= 1, "a number in (0, 1]")


def _fail(option, path, code):
    raise CommandError(f"{option} {path}: {os.strerror(code)}")


def check_output_file(option, path):
    """path can be written as a file: its folder exists and a file can be made in it (tried: a folder that says it
    is writable may not be — /proc, a read-only mount), and path is not a folder."""
    if path is None:
        return
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        _fail(option, path, errno.EISDIR)
    if not os.path.exists(folder):
        _fail(option, path, errno.ENOENT if _nearest(folder)[1] else errno.ENOTDIR)
    if not os.path.isdir(folder):
        _fail(option, path, errno.ENOTDIR)
    if not os.access(folder, os.W_OK):
        _fail(option, path, errno.EACCES)
    _try_a_file(option, path, folder)


def _try_a_file(option, path, folder):
    """Make and remove an empty file in ``folder``; an error names the option and the user's path."""
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".transformer_np-probe-")
    except OSError as e:
        _fail(option, path, e.errno or errno.EACCES)
    os.close(fd)
    os.unlink(probe)


@contextlib.contextmanager
def writing(option, path):
    """Errors while writing ``path`` (a full disk, a file too large, a folder gone since the check) as one line
    naming the option and the user's path: ``--out page.html: No space left on device``."""
    try:
        yield
    except OSError as e:
        raise CommandError(f"{option} {path}: {e.strerror or e}") from None


def check_output_dir(option, path):
    """path is a folder that exists or can be made: no part of it is a file, and where it would be made is
    writable."""
    if os.path.exists(path) and not os.path.isdir(path):
        _fail(option, path, errno.ENOTDIR)
    existing, is_dir = _nearest(os.path.abspath(path))
    if not is_dir:
        _fail(option, path, errno.ENOTDIR)
    if not os.access(existing, os.W_OK):
        _fail(option, path, errno.EACCES)
    _try_a_file(option, path, existing)


def _nearest(path):
    """(the longest existing prefix of path, whether it is a folder)."""
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return path, os.path.isdir(path)


MAX_TEXT_BYTES = 64 * 2**20  # a text to evaluate on: 64 MiB is millions of tokens, hours of evaluation


def read_text_file(option, path):
    """The UTF-8 text of a file given on the command line (untrusted: its size is checked before it is read, and
    bytes that are not UTF-8 are an error naming the option, not a crash)."""
    try:
        size = os.path.getsize(path)
        if size > MAX_TEXT_BYTES:
            raise CommandError(f"{option} {path}: {size:,} bytes, more than the {MAX_TEXT_BYTES:,} read")
        with open(path, "rb") as f:
            data = f.read(MAX_TEXT_BYTES + 1)
    except OSError as e:
        raise CommandError(f"{option} {path}: {e.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CommandError(f"{option} {path}: not UTF-8 text (byte {e.start})") from None
    if not text.strip():
        raise CommandError(f"{option} {path}: the file holds no text")
    return text


@contextlib.contextmanager
def progress_bar(total, desc, unit):
    """A progress bar with an estimate of the time left (tqdm, on stderr, only when it is a terminal: logs and
    pipes stay clean); yields its update(n) for a long loop's progress hook."""
    bar = tqdm(total=total, desc=desc, unit=unit, disable=None, leave=False, dynamic_ncols=True)
    try:
        yield bar.update
    finally:
        bar.close()


# --- what a generation reports -------------------------------------------------------------------------------
WEIGHTS = ("float32", "bfloat16", "int8", "q4")  # chat's and generate's --weights


def weight_options(name):
    """The loader's options for stored weights ``name``: q4 keeps the file's own blocks, float32 dequantizes them,
    the others (int8, bfloat16, float16, float8_e4m3fn) are converted a few rows at a time."""
    if name == "q4":
        return {"keep_quantized": True}
    return {} if name == "float32" else {"convert": row_converter(name)}


def add_weights_option(parser):
    parser.add_argument("--weights", choices=WEIGHTS, default="float32",
                        help="how SmolLM2's matrices are stored: float32 (dequantized at load), bfloat16, int8 "
                             "(per output channel) or q4 (the file's own 4-bit blocks, kept); the products "
                             "dequantize tile by tile (default: %(default)s)")


def peak_rss_bytes():
    """The process's peak resident memory so far: Linux's VmHWM (this program's own; getrusage's ru_maxrss also
    counts a forking parent's pages, from before exec), else ru_maxrss (macOS: bytes), else 0 (Windows)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    if resource is None:  # Windows
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if os.uname().sysname == "Darwin" else peak * 1024  # bytes on macOS, KiB elsewhere


class GenerationClock:
    """Time to first token and the decode speed after it: :meth:`token` is called as each step's tokens arrive
    (``n`` of them: one per row of a batch)."""

    def __init__(self, clock):
        self.clock, self.t0, self.first, self.last, self.n, self.n_first = clock, clock(), None, None, 0, 0

    def token(self, n=1):
        self.last = self.clock()
        if self.first is None:
            self.first, self.n_first = self.last, n
        self.n += n

    def report(self):
        """'time to first token 0.31 s · decode 15.2 tokens/s (12 tokens, prompt excluded) · peak RSS 612 MB'"""
        ttft = "-" if self.first is None else f"{self.first - self.t0:.2f} s"
        after = self.n - self.n_first  # the tokens of the steps after the first, over the time they took
        rate = f"{after / (self.last - self.first):.1f}" if after and self.last > self.first else "-"
        return (f"time to first token {ttft} · decode {rate} tokens/s ({self.n} tokens, prompt excluded) · "
                f"peak RSS {peak_rss_bytes() / 1e6:.0f} MB")


def cut_at_stop(text, stops):
    """(text before the first of ``stops`` to appear in it, whether one did)."""
    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


class StopStrings:
    """A generation's text cut just before the first of ``stops`` to appear: :meth:`feed` returns what may be shown
    now — holding back an end that could still grow into a stop string — and :attr:`hit` turns True once one has
    appeared (the generation can end)."""

    def __init__(self, stops):
        self.stops, self.held, self.hit = list(stops), "", False

    def feed(self, text):
        if self.hit:
            return ""
        self.held += text
        out, self.hit = cut_at_stop(self.held, self.stops)
        if self.hit:
            self.held = ""
            return out
        keep = max((k for s in self.stops for k in range(1, len(s)) if self.held.endswith(s[:k])), default=0)
        out, self.held = self.held[: len(self.held) - keep], self.held[len(self.held) - keep:]
        return out

    def flush(self):
        out, self.held = ("" if self.hit else self.held), ""
        return out
