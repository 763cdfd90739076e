"""What several commands share: the run directory, the API options, key and client."""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from batchkling.errors import LedgerError, UnreachableError, UsageError
from batchkling.model import DEFAULT_RATE, DEFAULT_REACH_TIMEOUT

if TYPE_CHECKING:
    import httpx

    from batchkling.api.client import SjinnClient
    from batchkling.cli._io import IO
    from batchkling.preflight.reach import ReachWatch
    from batchkling.reconcile.usage import ReconcileOutcome
    from batchkling.schedule import Rate

# What the options' handlers use (the ledger and its I/O stack among them) is imported
# inside them: every command's parser is built from this module, whichever command runs.

__all__ = [
    "DEFAULT_API_BASE",
    "ApiSettings",
    "Connection",
    "add_api_options",
    "add_manifest_or_run_dir",
    "add_rate_option",
    "add_reach_option",
    "add_run_dir_option",
    "api_base_from",
    "api_base_source",
    "api_key_from",
    "api_settings_from",
    "client_from",
    "existing_ledger",
    "print_reconciliation",
    "run_dir_from",
    "state_dir_from_env",
    "unreachable_message",
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


def add_manifest_or_run_dir(p: argparse.ArgumentParser) -> None:
    """``MANIFEST|--run-dir DIR``: the run a reading command (report, review, export) reads."""
    p.add_argument(
        "manifest",
        nargs="?",
        metavar="MANIFEST",
        help="the manifest (default: the one the ledger's header names)",
    )
    add_run_dir_option(p)


def add_rate_option(p: argparse.ArgumentParser) -> None:
    """``--rate R``: the pace of API requests, for the commands that make a few."""
    p.add_argument(
        "--rate",
        default=DEFAULT_RATE,
        help=f"API requests per second or minute (default {DEFAULT_RATE})",
    )


def add_reach_option(p: argparse.ArgumentParser) -> None:
    """``--reach-timeout S``: how long pre-flight tries an API it cannot connect to."""
    from batchkling.cli._types import finite_seconds

    p.add_argument(
        "--reach-timeout",
        type=finite_seconds,
        default=DEFAULT_REACH_TIMEOUT,
        metavar="S",
        help="how long to keep trying an API that refuses connections or cannot be found "
        f"before giving up, exit 2 (default {DEFAULT_REACH_TIMEOUT:g})",
    )


def unreachable_message(api: ApiSettings, exc: UnreachableError) -> str:
    """The line for an API never reached, naming its URL and where that came from."""
    from batchkling._util import span

    if exc.status_code is not None:
        return (
            f"{api.where} answered {exc.reason} to the account request: no sjinn API at that "
            "URL; check it. Nothing was sent."
        )
    return (
        f"{api.where} could not be reached for {span(exc.waited)} ({exc.reason}); nothing was sent."
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
    """The API key from --api-key-file or $SJINN_API_KEY, checked; never printed.

    From here on every message has the key removed (``remember_secret``).
    """
    from batchkling.api.key import checked_key, remember_secret

    if args.api_key_file is not None:
        try:
            raw = args.api_key_file.read_bytes()
        except OSError as exc:
            raise UsageError(
                f"cannot read --api-key-file {args.api_key_file}: {exc.strerror}."
            ) from None
        return remember_secret(checked_key(raw, source=f"--api-key-file {args.api_key_file}"))
    value = os.environ.get("SJINN_API_KEY", "")
    if not value.strip():
        raise UsageError(
            "no API key: set SJINN_API_KEY or pass --api-key-file PATH.",
            hint="Nothing was read or sent.",
        )
    return remember_secret(checked_key(value, source="SJINN_API_KEY"))


def api_base_from(args: argparse.Namespace) -> str:
    base = args.api_base or os.environ.get("SJINN_API_BASE") or DEFAULT_API_BASE
    if not base.startswith(("http://", "https://")):
        raise UsageError(f"--api-base {base!r} is not an http(s) URL.")
    return base


def api_base_source(args: argparse.Namespace) -> str:
    """Where the API base URL came from, as messages name it: ``--api-base``,
    ``SJINN_API_BASE`` or ``the default``."""
    if args.api_base:
        return "--api-base"
    if os.environ.get("SJINN_API_BASE"):
        return "SJINN_API_BASE"
    return "the default"


def state_dir_from_env() -> Path:
    """Where the account journals live: ``$XDG_STATE_HOME/batchkling``, else
    ``~/.local/state/batchkling``."""
    base = os.environ.get("XDG_STATE_HOME", "").strip()
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".local" / "state"
    return root / "batchkling"


def run_dir_from(args: argparse.Namespace, manifest_path: str | Path) -> Path:
    """The run directory: --run-dir, else the manifest's default; always absolute."""
    from batchkling.report.rows import default_run_dir

    run_dir: Path = args.run_dir or default_run_dir(manifest_path)
    return run_dir.absolute()


@dataclass(frozen=True)
class ApiSettings:
    """Where and how fast to call the API, and with which key (never shown)."""

    base: str
    rate: Rate
    key: str = field(repr=False)
    source: str = "the default"  # where ``base`` came from (``api_base_source``)

    @property
    def where(self) -> str:
        """The API as messages name it: ``the API at URL (from --api-base)``."""
        origin = "the default" if self.source == "the default" else f"from {self.source}"
        return f"the API at {self.base} ({origin})"


def api_settings_from(args: argparse.Namespace) -> ApiSettings:
    """The API settings of --api-key-file/$SJINN_API_KEY, --api-base/$SJINN_API_BASE and --rate.

    Read before anything else a command does, so that a missing key is the one
    error reported when there are several.
    """
    from batchkling.schedule import parse_rate

    key = api_key_from(args)
    return ApiSettings(
        base=api_base_from(args),
        rate=parse_rate(args.rate),
        key=key,
        source=api_base_source(args),
    )


class Connection(NamedTuple):
    """An open API client, and the HTTP client for files (videos, images) it downloads with."""

    client: SjinnClient
    http: httpx.AsyncClient


@asynccontextmanager
async def client_from(
    api: ApiSettings, *, pooled: bool = False, reach: ReachWatch | None = None
) -> AsyncIterator[Connection]:
    """An API client paced at ``api.rate``, closed on exit.

    With ``pooled``, API requests go straight to a connection pool of their own,
    apart from the files: what a run's many polls need; ``reach`` then watches
    whether any of them got an answer.
    """
    # Imported here: the commands that never call the API load no HTTP stack.
    from batchkling.api.client import SjinnClient, make_http_client, make_transport
    from batchkling.api.gate import RequestGate

    gate = RequestGate(api.rate)
    if not pooled:
        async with make_http_client() as http:
            yield Connection(SjinnClient(http, base_url=api.base, api_key=api.key, gate=gate), http)
        return
    transport = make_transport()
    async with transport, make_http_client() as http:
        client = SjinnClient(
            http,
            base_url=api.base,
            api_key=api.key,
            gate=gate,
            transport=transport if reach is None else reach.wrap(transport),
        )
        yield Connection(client, http)


def existing_ledger(run_dir: Path, *, required: bool) -> Path:
    """The run directory's ledger path; with ``required``, an error when nothing ran there."""
    from batchkling.ledger import LEDGER_NAME

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
    from batchkling._util import thousands

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
        ids = ", ".join(
            f"{c.task_id} ({thousands(c.credits)} credits at {c.at.isoformat()})" for c in cands
        )
        print(f"still in doubt: {job}: several charges could be its create: {ids}", file=io.err)
    for job in res.waiting:
        why = res.reasons.get(job, "no charge matches it yet")
        print(f"still in doubt: {job}: {why}.", file=io.err)
    for c in res.orphans:
        print(
            f"orphan charge: task {c.task_id}, {thousands(c.credits)} credits at "
            f"{c.at.isoformat()}, "
            "claimed by no job of this run.",
            file=io.err,
        )
