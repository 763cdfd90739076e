"""Subcommands: filled in by their issue."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add this module's subcommands to the parser."""
