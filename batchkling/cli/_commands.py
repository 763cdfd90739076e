"""The list of subcommands, in the order `--help` shows them."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from batchkling.cli import (
    _check_cmds,
    _manifest_cmds,
    _mock_server,
    _report_cmd,
    _run_cmds,
    _status_cmd,
)

__all__ = ["REGISTRY"]

Register = Callable[["argparse._SubParsersAction[Any]"], None]

REGISTRY: list[Register] = [
    _manifest_cmds.register,  # validate, plan
    _run_cmds.register,  # run
    _status_cmd.register,  # status
    _check_cmds.register,  # check, reconcile
    _report_cmd.register,  # report
    _mock_server.register,  # mock-server
]
