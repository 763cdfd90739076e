"""The command line: parses arguments, reads the environment, prints, exits.

Each subcommand lives in its own module with a ``register(subparsers)`` function
that adds its parser and sets ``handler`` to a function ``(args, io) -> int``.
Nothing imports this package; it imports everything.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TextIO

from batchkling import __version__
from batchkling.cli._io import IO
from batchkling.errors import BatchklingError, ManifestError, PreflightError

__all__ = ["console_main", "main"]


def _build_parser() -> argparse.ArgumentParser:
    # Imported here so that `batchkling --version` stays fast and the emulator's
    # optional dependencies are only imported by `mock-server`.
    from batchkling.cli import _commands

    parser = argparse.ArgumentParser(
        prog="batchkling",
        description="Render many Kling 3.0 image-to-video shots through the sjinn.ai API.",
    )
    parser.add_argument("--version", action="version", version=f"batchkling {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for register in _commands.REGISTRY:
        register(sub)
    return parser


def main(
    argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Run one command and return its exit status; never raises a BatchklingError."""
    io = IO(out=out or sys.stdout, err=err or sys.stderr)
    parser = _build_parser()
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:  # argparse exits 2 on bad usage, 0 on --help
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    try:
        return int(args.handler(args, io))
    except (ManifestError, PreflightError) as exc:
        for problem in exc.problems:
            print(problem, file=io.err)
        return exc.exit_code
    except BatchklingError as exc:
        _print_error(exc, io.err)
        return exc.exit_code
    except KeyboardInterrupt:
        # Every ledger write is whole or cut off on the next open: nothing to clean up.
        print("batchkling: interrupted. Run the same command again to resume.", file=io.err)
        return 130


def _print_error(exc: BatchklingError, err: TextIO) -> None:
    # One line, so that a log shows the problem and what to do about it together.
    hint = "" if exc.hint is None else f" {exc.hint}"
    print(f"batchkling: error: {exc.message}{hint}", file=err)


def console_main() -> None:
    """Entry point of the `batchkling` console script."""
    sys.exit(main())
