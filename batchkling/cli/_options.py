"""What several commands share: the run directory, the API options and key, opening a run."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from batchkling import __version__
from batchkling.cli._io import IO
from batchkling.errors import LedgerError, UsageError
from batchkling.ledger import LEDGER_NAME, Ledger
from batchkling.model import Manifest
from batchkling.reconcile.usage import ReconcileOutcome

__all__ = [
    "DEFAULT_API_BASE",
    "add_api_options",
    "add_run_dir_option",
    "api_base_from",
    "api_key_from",
    "existing_ledger",
    "open_run",
    "print_reconciliation",
    "warn_torn_tail",
]

DEFAULT_API_BASE = "https://sjinn.ai"


def add_run_dir_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--run-dir",
        type=Path,
        metavar="DIR",
        help="run directory (default: <manifest dir>/<manifest stem>.run/)",
    )


def add_api_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--api-base",
        metavar="URL",
        help=f"API base URL (default: $SJINN_API_BASE, else {DEFAULT_API_BASE})",
    )
    p.add_argument(
        "--api-key-file",
        type=Path,
        metavar="PATH",
        help="read the API key from this file (default: $SJINN_API_KEY)",
    )


def api_key_from(args: argparse.Namespace) -> str:
    """The API key from --api-key-file or $SJINN_API_KEY; never printed."""
    if args.api_key_file is not None:
        try:
            key: str = args.api_key_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise UsageError(
                f"cannot read --api-key-file {args.api_key_file}: {exc.strerror}."
            ) from None
        if not key:
            raise UsageError(f"--api-key-file {args.api_key_file} is empty.")
        return key
    key = os.environ.get("SJINN_API_KEY", "").strip()
    if not key:
        raise UsageError(
            "no API key: set SJINN_API_KEY or pass --api-key-file PATH.",
            hint="Nothing was read or sent.",
        )
    return key


def api_base_from(args: argparse.Namespace) -> str:
    base = args.api_base or os.environ.get("SJINN_API_BASE") or DEFAULT_API_BASE
    if not base.startswith(("http://", "https://")):
        raise UsageError(f"--api-base {base!r} is not an http(s) URL.")
    return base


def open_run(manifest: Manifest, run_dir: Path, io: IO) -> Ledger:
    """Lock and read the run directory's ledger, writing its header if it is new."""
    ledger = Ledger.open(run_dir)
    for warning in ledger.warnings:
        print(f"batchkling: warning: {warning}", file=io.err)
    path = str(Path(manifest.path).absolute())
    header = ledger.state.header
    if header is None:
        ledger.append_sync(
            "header",
            None,
            version=__version__,
            format=1,
            manifest=path,
            manifest_sha256=manifest.sha256,
        )
    elif header.get("manifest") != path:
        # Job keys are only meaningful within one manifest: say so, but the budget
        # still counts everything this ledger committed.
        print(
            f"batchkling: warning: the run directory {run_dir} was made for "
            f"{header.get('manifest')}, not {path}; jobs with the same keys are taken as "
            "the same jobs.",
            file=io.err,
        )
    return ledger


def existing_ledger(run_dir: Path, *, required: bool) -> Path:
    """The run directory's ledger path; with ``required``, an error when nothing ran there."""
    path = Path(run_dir) / LEDGER_NAME
    if required and not path.exists():
        raise LedgerError(f"no ledger at {path}: nothing has run in {run_dir}.")
    return path


def warn_torn_tail(path: Path, torn_tail: bytes | None, io: IO) -> None:
    """Say that a reader without the lock found an unfinished last line (and left it)."""
    if torn_tail is not None:
        print(
            f"batchkling: warning: {path}: the last line is torn "
            f"({len(torn_tail)} bytes); the next run cuts it off.",
            file=io.err,
        )


def print_reconciliation(outcome: ReconcileOutcome, io: IO) -> None:
    """One line per finding of a reconciliation."""
    if outcome.unavailable is not None:
        print(
            f"batchkling: the credits usage could not be read ({outcome.unavailable}); "
            "in-doubt jobs are left as they are.",
            file=io.err,
        )
        return
    res = outcome.result
    if res is None:
        return
    for job, charge in res.adopted:
        print(
            f"reconciled: {job} was charged as task {charge.task_id} at "
            f"{charge.at.isoformat()}; it is followed like any other.",
            file=io.err,
        )
    for job in res.not_created:
        print(f"not created: {job} was never charged; it is submitted again.", file=io.err)
    for job, cands in res.ambiguous:
        ids = ", ".join(f"{c.task_id} ({c.credits:g} credits at {c.at.isoformat()})" for c in cands)
        print(f"still in doubt: {job}: several charges could be its create: {ids}", file=io.err)
    for job in res.waiting:
        print(f"still in doubt: {job}: no charge yet; the usage has not settled.", file=io.err)
    for c in res.orphans:
        print(
            f"orphan charge: task {c.task_id}, {c.credits:g} credits at {c.at.isoformat()}, "
            "claimed by no job of this run.",
            file=io.err,
        )
