"""The README documents every command, every option and every exit status."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from batchkling.cli import _build_parser

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = _build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no subcommands")


COMMANDS = _subparsers()


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_and_option_is_documented(name: str) -> None:
    """Each subcommand has a README section naming each of its options."""
    assert f"batchkling {name}" in README
    for action in COMMANDS[name]._actions:
        for flag in action.option_strings:
            if flag in ("-h", "--help"):
                continue
            assert f"`{flag}" in README or f" {flag} " in README or f"[{flag}" in README, (
                f"{name} {flag} is not in the README"
            )


def test_exit_statuses_and_environment_are_documented() -> None:
    """The exit statuses and environment variables users' scripts rely on are in the README."""
    for status in ("| 0 |", "| 1 |", "| 2 |", "| 3 |", "| 4 |", "| 130 |"):
        assert status in README
    for var in ("SJINN_API_KEY", "SJINN_API_BASE"):
        assert f"`{var}`" in README
