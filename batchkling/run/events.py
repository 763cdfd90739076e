"""What ``run_manifest`` tells its progress callback, in order, besides ``Progress`` snapshots.

Each is a small frozen value for the caller to show or ignore; the library itself
prints nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from batchkling.api.answers import Account
from batchkling.errors import Problem
from batchkling.run.options import Progress
from batchkling.run.selection import Selection

if TYPE_CHECKING:  # at run time only a name in an annotation; it would import the client
    from batchkling.reconcile.usage import ReconcileOutcome

__all__ = ["Checked", "Opened", "Planned", "Reconciled", "RunEvent", "Started"]


@dataclass(frozen=True)
class Opened:
    """The run directory is locked and read; ``warnings`` are whole sentences to show."""

    run_dir: Path
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class Reconciled:
    """In-doubt creates left by an earlier run were settled before selecting the work."""

    outcome: ReconcileOutcome


@dataclass(frozen=True)
class Planned:
    """The work of this run is decided."""

    selection: Selection


@dataclass(frozen=True)
class Checked:
    """Pre-flight passed the account; ``warnings`` are image findings that do not stop the run."""

    account: Account
    warnings: tuple[Problem, ...]


@dataclass(frozen=True)
class Started:
    """The work starts: from now on creates may be sent, and a stop request is honoured."""


RunEvent: TypeAlias = Progress | Opened | Reconciled | Planned | Checked | Started
