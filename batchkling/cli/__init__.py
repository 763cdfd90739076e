"""The command line: parses arguments, reads the environment, prints, exits.

Each subcommand lives in its own module with a ``register(subparsers)`` function
that adds its parser and sets ``handler`` to a function ``(args, io) -> int``.
Nothing imports this package; it imports everything, lazily: until ``main``
runs, importing it loads nothing else, so a Ctrl-C while the program starts
is caught like any other (exit 130, no traceback).

Everything a command prints goes through ``_streams.OutputStream``: the API key
is removed from every line, and a closed pipe ends the output quietly. Bad
usage is one line, with the option meant when a name is mistyped.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TextIO, cast

if TYPE_CHECKING:
    from batchkling.cli._io import IO
    from batchkling.errors import BatchklingError

if sys.version_info >= (3, 11):
    _Group = BaseExceptionGroup  # noqa: F821 (a builtin since 3.11)
else:  # anyio depends on the backport there
    from exceptiongroup import BaseExceptionGroup as _Group

__all__ = ["EXIT_INTERRUPTED", "console_main", "main"]

EXIT_INTERRUPTED = 130
_INTERRUPTED = "batchkling: interrupted. Run the same command again to resume."


class _UsageExit(Exception):
    """Bad usage, already worded as the one line to print."""


class _Parser(argparse.ArgumentParser):
    """An argument parser that reports bad usage as one line, through ``main``'s streams."""

    def error(self, message: str) -> NoReturn:
        raise _UsageExit(f"{self.prog}: error: {message} (see {self.prog} --help)")


class _VersionAction(argparse.Action):
    """``--version``: the installed version, looked up only when asked for.

    Reading the package metadata imports ``importlib.metadata`` (and the email
    parser under it), a large part of start-up that no other command needs.
    """

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(
            option_strings, dest, nargs=0, help="show program's version number and exit", **kwargs
        )

    def __call__(self, parser: argparse.ArgumentParser, *_args: Any, **_kwargs: Any) -> NoReturn:
        from batchkling import __version__

        parser._print_message(f"batchkling {__version__}\n", sys.stdout)
        parser.exit()


def _build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser of the command line, with one subparser per command.

    Given ``argv``, only the command it names is built in full, the others as a
    name and a line of help (all `batchkling --help` shows of them); without, all.
    """
    # Imported here so that importing this package loads nothing else. A command's
    # module is imported only to build its parser, and it imports its machinery (the
    # HTTP stack, the manifest loader, the emulator) in its handler: starting a
    # command loads what that command uses and nothing of the others.
    from batchkling.cli import _commands

    wanted = "*" if argv is None else _commands.named_in(argv)

    parser = _Parser(
        prog="batchkling",
        description="Render many Kling 3.0 image-to-video shots through the sjinn.ai API.",
    )
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for command in _commands.COMMANDS:
        if wanted in ("*", command.name):
            command.register(sub)
        else:
            command.register_name(sub)
    return parser


def _command_parser(parser: argparse.ArgumentParser, name: str | None) -> argparse.ArgumentParser:
    """The subparser of command ``name`` (``parser`` itself when there is none)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and name in action.choices:
            found: argparse.ArgumentParser = action.choices[name]
            return found
    return parser


def _unrecognized(extras: list[str], parser: argparse.ArgumentParser) -> str:
    """The usage error for arguments no option takes, naming the option probably meant."""
    import difflib

    message = f"{parser.prog}: error: unrecognized arguments: {' '.join(extras)}"
    known = [s for action in parser._actions for s in action.option_strings]
    for extra in extras:
        if extra.startswith("-"):
            close = difflib.get_close_matches(extra.split("=", 1)[0], known, n=1, cutoff=0.6)
            if close:
                return f"{message}; did you mean {close[0]}?"
    return f"{message} (see {parser.prog} --help)"


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = _build_parser(argv)
    args, extras = parser.parse_known_args(list(argv))
    if extras:
        raise _UsageExit(_unrecognized(extras, _command_parser(parser, args.command)))
    return args


def main(
    argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Run one command and return its exit status; never raises a BatchklingError."""
    from batchkling.api.key import secrets_scope
    from batchkling.cli._io import IO
    from batchkling.cli._streams import OutputStream

    io = IO(
        out=cast(TextIO, OutputStream(out or sys.stdout)),
        err=cast(TextIO, OutputStream(err or sys.stderr)),
    )
    with secrets_scope():
        try:
            return _run(sys.argv[1:] if argv is None else argv, io)
        except KeyboardInterrupt:
            # Every ledger write is whole or cut off on the next open: nothing to clean up.
            print(_INTERRUPTED, file=io.err)
            return EXIT_INTERRUPTED
        finally:
            io.out.flush()
            io.err.flush()


def _run(argv: Sequence[str], io: IO) -> int:
    import os

    from batchkling.api.key import remember_secret
    from batchkling.errors import BatchklingError, ManifestError, PreflightError

    # Whatever command runs, the key in the environment never leaves in a message.
    remember_secret(os.environ.get("SJINN_API_KEY", "").strip())
    try:
        args = _parse(argv)
    except _UsageExit as exc:
        print(exc, file=io.err)
        return 2
    except SystemExit as exc:  # --help and --version
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    handler: Any = args.handler
    try:
        return int(handler(args, io))
    except (ManifestError, PreflightError) as exc:
        for problem in exc.problems:
            print(problem, file=io.err)
        return exc.exit_code
    except BatchklingError as exc:
        _print_error(exc, io.err)
        return exc.exit_code
    except _Group as group:
        # Concurrent work that failed: when every failure is one of ours, it is said
        # like any other (the strongest first: a refused key stops everything).
        found = _errors_in(group)
        if found is None:
            raise
        strongest = max(found, key=lambda e: e.exit_code)
        _print_error(strongest, io.err)
        return strongest.exit_code


def _errors_in(group: BaseException) -> list[BatchklingError] | None:
    """The errors of a (nested) exception group, or None unless all are ``BatchklingError``."""
    from batchkling.errors import BatchklingError

    if isinstance(group, BatchklingError):
        return [group]
    if not isinstance(group, _Group):
        return None
    found: list[BatchklingError] = []
    for exc in group.exceptions:
        inner = _errors_in(exc)
        if inner is None:
            return None
        found += inner
    return found


def _print_error(exc: BatchklingError, err: TextIO) -> None:
    # One line, so that a log shows the problem and what to do about it together.
    hint = "" if exc.hint is None else f" {exc.hint}"
    print(f"batchkling: error: {exc.message}{hint}", file=err)


def console_main() -> None:
    """Entry point of the `batchkling` console script."""
    try:
        from batchkling.cli._streams import install_redaction

        install_redaction()
        status = main()
    except KeyboardInterrupt:  # before ``main`` could catch it: while importing
        with contextlib.suppress(OSError, ValueError):
            print(_INTERRUPTED, file=sys.stderr)
        status = EXIT_INTERRUPTED
    sys.exit(status)
