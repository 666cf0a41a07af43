"""Command line: ``python -m transformer_np COMMAND ...`` — tour, bench, generate, chat, serve, serve-sim,
train, compress, distill-draft, embed, search, tp-generate, sweep, explore, figures.

One module per command, each with ``add_arguments(parser)`` and ``run(args) -> exit status``; the errors a user
can cause (a bad value, an unwritable path, a missing file or library) are printed as one ``error:`` line
naming the argument, with exit status 2 and no traceback; Ctrl-C ends a command with one line and exit status 130.
"""

from __future__ import annotations

import argparse
import sys
from importlib import metadata

from . import (
    bench,
    chat,
    compress,
    distill_draft,
    embed,
    explore,
    figures,
    generate,
    serve,
    serve_sim,
    sweep,
    tour,
    tp_generate,
    train,
)
from .options import CommandError

# name: (help, add_arguments, run, the exceptions that mean a user error)
COMMANDS = {
    "tour": (tour.HELP, tour.add_arguments, tour.run, ()),
    "bench": (bench.HELP, bench.add_arguments, bench.run, bench.ERRORS),
    "generate": (generate.HELP, generate.add_arguments, generate.run, generate.ERRORS),
    "chat": (chat.HELP, chat.add_arguments, chat.run, chat.ERRORS),
    "serve": (serve.HELP, serve.add_arguments, serve.run, serve.ERRORS),
    "serve-sim": (serve_sim.HELP, serve_sim.add_arguments, serve_sim.run, serve_sim.ERRORS),
    "embed": (embed.EMBED_HELP, embed.add_embed_arguments, embed.run_embed, embed.ERRORS),
    "search": (embed.SEARCH_HELP, embed.add_search_arguments, embed.run_search, embed.ERRORS),
    "train": (train.HELP, train.add_arguments, train.run, train.ERRORS),
    "compress": (compress.HELP, compress.add_arguments, compress.run, compress.ERRORS),
    "distill-draft": (distill_draft.HELP, distill_draft.add_arguments, distill_draft.run, distill_draft.ERRORS),
    "tp-generate": (tp_generate.HELP, tp_generate.add_arguments, tp_generate.run, tp_generate.ERRORS),
    "explore": (explore.HELP, explore.add_arguments, explore.run, explore.ERRORS),
    "sweep": (sweep.HELP, sweep.add_arguments, sweep.run, sweep.ERRORS),
    "figures": (figures.HELP, figures.add_arguments, figures.run, ()),
}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m transformer_np", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"transformer_np {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, add_arguments, _, _) in COMMANDS.items():
        add_arguments(sub.add_parser(name, help=help_text))
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse has printed the usage and the error (or the help)
        return e.code
    _, _, run, errors = COMMANDS[args.command]
    try:
        return run(args)
    except (CommandError, OSError, *errors) as e:  # OSError: a full disk, a file that went away
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: one line, the shell's exit status for SIGINT, no traceback
        print("interrupted", file=sys.stderr)
        return 130


def _version():
    """The installed distribution's version (the package's ``__version__``, which the cli floor cannot import)."""
    try:
        return metadata.version("transformer_np")
    except metadata.PackageNotFoundError:
        return "(not installed)"


if __name__ == "__main__":
    sys.exit(main())
