"""`batchkling reconcile`: settle in-doubt creates against the account's credits usage."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import anyio

from batchkling.api.client import RequestGate, SjinnClient, make_http_client
from batchkling.cli._io import IO
from batchkling.cli._options import (
    add_api_options,
    add_run_dir_option,
    api_base_from,
    api_key_from,
    print_reconciliation,
)
from batchkling.errors import UsageError
from batchkling.ledger import LEDGER_NAME, Ledger
from batchkling.model import JobState
from batchkling.reconcile.match import DEFAULT_SETTLE
from batchkling.reconcile.usage import reconcile_ledger
from batchkling.report.rows import default_run_dir
from batchkling.schedule import parse_rate

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add `reconcile`."""
    r = sub.add_parser(
        "reconcile",
        help="settle in-doubt creates against the account's credits usage",
        description="Match the run's in-doubt creates against the account's credits usage: "
        "adopt a charge that matches one job, return a job that was never charged to pending, "
        "list what stays ambiguous and charges no job claims.",
    )
    r.add_argument("manifest", nargs="?", metavar="MANIFEST")
    add_run_dir_option(r)
    add_api_options(r)
    r.add_argument("--rate", default="2/s", help="API requests per second or minute (default 2/s)")
    r.add_argument(
        "--usage-settle",
        type=float,
        default=DEFAULT_SETTLE,
        metavar="S",
        help=f"settle delay of the credits usage, seconds (default {DEFAULT_SETTLE:g})",
    )
    r.set_defaults(handler=cmd_reconcile)


def cmd_reconcile(args: argparse.Namespace, io: IO) -> int:
    if args.manifest is None and args.run_dir is None:
        raise UsageError("reconcile needs MANIFEST or --run-dir DIR.")
    key = api_key_from(args)
    base = api_base_from(args)
    rate = parse_rate(args.rate)
    if args.run_dir is not None:
        run_dir = Path(args.run_dir).absolute()
    else:
        run_dir = default_run_dir(args.manifest)
    if not (run_dir / LEDGER_NAME).exists():
        raise UsageError(f"no ledger at {run_dir / LEDGER_NAME}: nothing has run there.")
    ledger = Ledger.open(run_dir)
    try:
        for warning in ledger.warnings:
            print(f"batchkling: warning: {warning}", file=io.err)

        async def main() -> Any:
            async with make_http_client() as http:
                client = SjinnClient(http, base_url=base, api_key=key, gate=RequestGate(rate))
                return await reconcile_ledger(ledger, client, settle=args.usage_settle)

        outcome = anyio.run(main)
        if outcome.result is None and outcome.unavailable is None:
            print("nothing in doubt.", file=io.out)
            return 0
        print_reconciliation(outcome, io)
        left = [k for k, r in ledger.state.jobs.items() if r.state is JobState.IN_DOUBT]
        print(f"{len(left)} job(s) still in doubt.", file=io.out)
        return 0 if not left and outcome.unavailable is None else 1
    finally:
        ledger.close()
