"""What the commands share: argument types that name what they want, and checks that an output path can be
written — run before any long work starts, so that a typo costs seconds, not a training run."""

from __future__ import annotations

import argparse
import errno
import math
import os


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


def probability(text):
    return _number(text, float, lambda v: 0 < v <= 1, "a number in (0, 1]")


def _fail(option, path, code):
    raise CommandError(f"{option} {path}: {os.strerror(code)}")


def check_output_file(option, path):
    """path can be written as a file: its folder exists and is writable, and path is not a folder."""
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
