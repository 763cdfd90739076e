"""The list of subcommands, in the order `--help` shows them, and where each one lives.

A command's module is imported only when its parser is needed: a command line
builds in full the one command it names, and every other one as its name and
its line of help, so that `batchkling --help` or `batchkling validate` loads
no other command's module (and nothing of what those import). Each line of help
here is the one the module's own parser gives (a test compares them).
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

__all__ = ["COMMANDS", "Command", "Register", "named_in"]

Register = Callable[["argparse._SubParsersAction[Any]"], None]


class Command(NamedTuple):
    """A subcommand: its name, the module that registers it, and its line in `--help`."""

    name: str
    module: str
    help: str

    def register(self, sub: argparse._SubParsersAction[Any]) -> None:
        """Add the full parser of this command (importing its module)."""
        register: Register = importlib.import_module(self.module).register
        register(sub)

    def register_name(self, sub: argparse._SubParsersAction[Any]) -> None:
        """Add this command as a name and a line of help only, for the list `--help` shows."""
        sub.add_parser(self.name, help=self.help)


COMMANDS: tuple[Command, ...] = (
    Command(
        "validate",
        "batchkling.cli.validate",
        "check a manifest and report every problem",
    ),
    Command(
        "plan",
        "batchkling.cli.plan",
        "what a manifest costs, job by job, against the budget",
    ),
    Command(
        "run",
        "batchkling.cli.run",
        "render every job of a manifest (running it again resumes)",
    ),
    Command(
        "status",
        "batchkling.cli.status",
        "show the state of every job of a run (no network)",
    ),
    Command(
        "check",
        "batchkling.cli.check",
        "pre-flight: the account and every image, before anything is spent",
    ),
    Command(
        "upload",
        "batchkling.cli.upload",
        "upload a manifest's local images and print the URL of each (creates nothing)",
    ),
    Command(
        "reconcile",
        "batchkling.cli.reconcile",
        "settle in-doubt creates against the account's credits usage",
    ),
    Command(
        "audit",
        "batchkling.cli.audit",
        "check every charge of the account over a run directory's runs",
    ),
    Command(
        "report",
        "batchkling.cli.report",
        "write an HTML storyboard, a CSV or a JSON report of a run (no network)",
    ),
    Command(
        "review",
        "batchkling.cli.review",
        "serve the storyboard on loopback to pick, reject and note takes in the browser",
    ),
    Command(
        "pick",
        "batchkling.cli.pick",
        "pick takes: the one of each shot that goes into the cut",
    ),
    Command(
        "reject",
        "batchkling.cli.reject",
        "reject takes: never chosen for the cut",
    ),
    Command(
        "note",
        "batchkling.cli.note",
        "write a note on a take",
    ),
    Command(
        "export",
        "batchkling.cli.export",
        "deliver the chosen takes: an animatic, an OpenTimelineIO timeline, a contact sheet",
    ),
    Command(
        "mock-server",
        "batchkling.cli.mock_server",
        "serve an emulator of the sjinn API for offline runs, tests and benchmarks",
    ),
)


def named_in(argv: Sequence[str]) -> str | None:
    """The command a command line names: its first word that is not an option, if a command.

    The top level takes no option with a value (only ``--help`` and
    ``--version``), so that word is the command, or a mistake argparse reports.
    """
    names = {c.name for c in COMMANDS}
    for word in argv:
        if word == "--":
            continue
        if not word.startswith("-"):
            return word if word in names else None
    return None
