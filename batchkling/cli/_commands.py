"""The list of subcommands, in the order `--help` shows them."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from batchkling.cli import (
    audit,
    check,
    mock_server,
    plan,
    reconcile,
    report,
    run,
    status,
    validate,
)

__all__ = ["REGISTRY", "Register"]

Register = Callable[["argparse._SubParsersAction[Any]"], None]

REGISTRY: list[Register] = [
    validate.register,
    plan.register,
    run.register,
    status.register,
    check.register,
    reconcile.register,
    audit.register,
    report.register,
    mock_server.register,
]
